"""The first download of a hub model tells its progress: our tqdm class driven the way huggingface_hub's
``snapshot_download`` drives the bars it is given (two byte bars whose totals grow as each file starts, a files
bar), the rate-limited callback, a log line each tenth, and which files of a diffusers repository are fetched."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.model_download import (
    DownloadProgress,
    ProgressBar,
    pipeline_files,
    reporting_downloads,
    weight_files,
)
from tests.generator.hubserver import Hub, serving

ROOT = Path(__file__).resolve().parents[2]
GB = 1000**3
CHUNK = 50_000_000  # bytes per update(), as one HTTP chunk batch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive_like_snapshot_download(bar: type[ProgressBar], sizes: list[int], clock: Clock) -> None:
    """What huggingface_hub 1.x does with ``tqdm_class``: a transfer bar and a reconstruction bar (unit "B", total 0,
    grown by each file's size as the file starts), a bar over the files, ``update(n)`` per chunk, then close."""
    transfer = bar(total=0, initial=0, unit="B", unit_scale=True, desc="Downloading bytes")
    reconstruct = bar(total=0, initial=0, unit="B", unit_scale=True, desc="Reconstructing (incomplete total...)")
    files = bar(total=len(sizes), desc=f"Fetching {len(sizes)} files")
    for size in sizes:  # each file starts: its size joins both totals
        reconstruct.total = (reconstruct.total or 0) + size
        transfer.total = (transfer.total or 0) + size
        reconstruct.refresh()
    for size in sizes:
        left = size
        while left:
            n = min(CHUNK, left)
            reconstruct.update(n)
            transfer.update(n // 2)  # network bytes: fewer (xet dedup and compression)
            left -= n
            clock.now += 0.1
        files.update(1)
    transfer.total = transfer.n  # "snap to 100 %"
    for b in (transfer, reconstruct, files):
        b.close()


def test_the_bar_reports_bytes_done_and_in_all_rate_limited_and_logs_each_tenth(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reports: list[tuple[int, int]] = []
    clock = Clock()
    progress = DownloadProgress("I2VGen-XL", lambda done, total: reports.append((done, total)), clock=clock)
    sizes = [2_800_000_000, 1_200_000_000, 700_000_000, 170_000_000, 230_000]  # unet, image/text encoders, vae, ...
    total = sum(sizes)
    with caplog.at_level(logging.INFO, logger="generator.download"):
        drive_like_snapshot_download(ProgressBar.for_download(progress), sizes, clock)
    progress.poll(final=True)

    assert reports[-1] == (total, total)
    assert all(t == total for _, t in reports)  # the bytes written, not the fewer network bytes
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    # rate-limited: each report 2 s or 1 % after the previous one (~100 reports, not one per chunk)
    assert 90 <= len(reports) <= 110
    for (a, _), (b, _) in zip(reports, reports[1:], strict=False):
        assert b - a >= 0.01 * total - CHUNK or b == total
    lines = [r.getMessage() for r in caplog.records if r.name == "generator.download"]
    assert len(lines) == 10, lines
    assert lines[0] == "downloading I2VGen-XL: 0.5 of 4.9 GB (10 %)"
    assert lines[-1] == "downloading I2VGen-XL: 4.9 of 4.9 GB (100 %)"
    assert capsys.readouterr().err == ""  # the bars print nothing


def test_reports_follow_the_clock_when_the_download_is_slow() -> None:
    reports: list[tuple[int, int]] = []
    clock = Clock()
    progress = DownloadProgress("Wan", lambda done, total: reports.append((done, total)), clock=clock)
    bar = ProgressBar.for_download(progress)(total=10 * GB, unit="B")
    for _ in range(20):  # 1 MB each 0.5 s: far less than 1 % per report
        bar.update(1_000_000)
        clock.now += 0.5
    assert [d for d, _ in reports] == [1_000_000, 5_000_000, 9_000_000, 13_000_000, 17_000_000]
    bar.close()


def test_a_callback_that_fails_does_not_stop_the_download(caplog: pytest.LogCaptureFixture) -> None:
    def broken(done: int, total: int) -> None:
        raise RuntimeError("store gone")

    bar = ProgressBar.for_download(DownloadProgress("X", broken))(total=GB, unit="B")
    bar.update(GB // 2)
    bar.update(GB // 2)
    bar.close()
    assert bar.n == GB and "reporting the download of X failed" in caplog.text


def test_reporting_downloads_sets_the_callback_for_the_block_only() -> None:
    from generator import model_download

    with reporting_downloads(lambda done, total: None):
        assert model_download._reporter is not None
    assert model_download._reporter is None


def test_the_files_fetched_are_what_the_pipeline_loads_fp16_where_there() -> None:
    repo = [
        "model_index.json",
        "README.md",
        "i2vgen_xl_00854500.pth",
        ".gitattributes",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "text_encoder/config.json",
        "text_encoder/model.fp16-00001-of-00002.safetensors",
        "text_encoder/model.fp16-00002-of-00002.safetensors",
        "text_encoder/model.safetensors.index.fp16.json",
        "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model-00002-of-00002.safetensors",
        "text_encoder/model.safetensors.index.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/tokenizer_config.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "feature_extractor/preprocessor_config.json",
        "unused/x.safetensors",
    ]
    index = {
        "_class_name": "I2VGenXLPipeline",
        "_diffusers_version": "0.24.0",
        "unet": ["diffusers", "X"],
        "text_encoder": ["transformers", "Y"],
        "tokenizer": ["transformers", "Z"],
        "vae": ["diffusers", "V"],
        "scheduler": ["diffusers", "S"],
        "feature_extractor": ["transformers", "F"],
        "safety_checker": [None, None],
    }
    assert sorted(pipeline_files(repo, index)) == sorted(
        [
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "text_encoder/config.json",
            "text_encoder/model.fp16-00001-of-00002.safetensors",
            "text_encoder/model.fp16-00002-of-00002.safetensors",
            "text_encoder/model.safetensors.index.fp16.json",
            "text_encoder/model.safetensors.index.json",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "tokenizer/tokenizer_config.json",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json",
            "feature_extractor/preprocessor_config.json",
        ]
    )
    assert weight_files(["a/model.bin", "a/config.json"]) == ["a/model.bin"]  # no safetensors: the .bin


FETCH_SCRIPT = """
import json, logging, sys
from generator.model_download import fetch_pipeline, reporting_downloads
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
reports = []
with reporting_downloads(lambda done, total: reports.append([done, total])):
    folder = fetch_pipeline(sys.argv[1], "Tiny")
print(json.dumps({"folder": folder, "reports": reports}))
"""


def test_snapshot_download_from_a_local_hub_feeds_the_bar(tmp_path: Path) -> None:
    """The real ``snapshot_download`` against a local stand-in of the hub (``HF_ENDPOINT``): only the files the
    pipeline loads are fetched, and the callback hears the bytes of exactly those, ending at the total; a second
    start finds them in the cache and fetches and reports nothing."""
    weight = 3_000_000
    files = {
        "model_index.json": json.dumps(
            {"_class_name": "P", "unet": ["diffusers", "U"], "text_encoder": ["transformers", "T"]}
        ).encode(),
        "unet/config.json": b'{"in_channels": 4}',
        "unet/diffusion_pytorch_model.fp16.safetensors": bytes(weight),
        "unet/diffusion_pytorch_model.safetensors": bytes(2 * weight),
        "text_encoder/config.json": b"{}",
        "text_encoder/model.safetensors": b"\x01" * weight,
        "original_checkpoint.pth": bytes(4 * weight),
    }
    wanted = {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
    }
    with serving(Hub("org/tiny-i2v", files)) as hub:
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0",
        }
        env.pop("HF_HUB_CACHE", None)
        done = subprocess.run(
            [sys.executable, "-c", FETCH_SCRIPT, "org/tiny-i2v"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        again = subprocess.run(
            [sys.executable, "-c", FETCH_SCRIPT, "org/tiny-i2v"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stderr
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"folder": json.loads(done.stdout)["folder"], "reports": []}  # cached
    out = json.loads(done.stdout)
    folder = Path(out["folder"])
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == wanted
    assert set(hub.fetched) == wanted and len(hub.fetched) == len(wanted)  # each once, over both starts
    total = sum(len(files[f]) for f in wanted - {"model_index.json"})
    assert out["reports"] and out["reports"][-1] == [total, total]
    assert "generator.download downloading Tiny: 0.0 of 0.0 GB (100 %)" in done.stderr
