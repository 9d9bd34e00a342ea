"""A real worker's first start on a hub model (a tiny I2VGen-XL served by a local stand-in of the hub through
``HF_ENDPOINT``): while the files download, its registry row says which model and how far; the log gets a line
each tenth; once loaded the row says nothing of a download, and the job runs from the downloaded folder. Only what the
pipeline loads is fetched: the fp16 weights where a folder has them (the plain ones where it does not), nothing
outside the component folders."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from generator.models.tiny import build_tiny_i2vgenxl
from jobs.models import JobStatus
from tests.generator.hubserver import Hub, serving
from tests.worker.workerharness import Db, WorkerPool, enqueue_jobs, make_input, worker_env

pytestmark = pytest.mark.slow

REPO = "org/tiny-i2vgen-xl"
STAGGER_S = 0.4  # each weight file arrives this much later than the one before: several progress reports


async def test_a_first_start_on_a_hub_model_tells_its_download(_sqlite_template: Path, tmp_path: Path) -> None:
    saved = tmp_path / "repo"
    build_tiny_i2vgenxl().save_pretrained(saved, variant="fp16")  # type: ignore[attr-defined]  # mypy sees diffusers' placeholder class
    for vae_weights in (saved / "vae").glob("*.fp16.safetensors"):  # a folder without the fp16 variant
        vae_weights.rename(vae_weights.with_name(vae_weights.name.replace(".fp16", "")))
    files = {str(p.relative_to(saved)): p.read_bytes() for p in saved.rglob("*") if p.is_file()}
    weights = sorted(f for f in files if f.endswith(".safetensors"))
    assert len(weights) >= 4 and "vae/diffusion_pytorch_model.safetensors" in weights
    unet = "unet/diffusion_pytorch_model.fp16.safetensors"
    files["unet/diffusion_pytorch_model.safetensors"] = files[unet] + bytes(1000)  # the fp32 copy: never fetched
    files["original_checkpoint.pth"] = bytes(1000)  # outside every component folder: never fetched
    fetched = [f for f in files if f not in ("unet/diffusion_pytorch_model.safetensors", "original_checkpoint.pth")]
    total = sum(len(files[f]) for f in fetched if f != "model_index.json")  # model_index.json: read ahead

    shutil.copyfile(_sqlite_template, tmp_path / "i2v.sqlite3")
    url = f"sqlite+aiosqlite:///{tmp_path / 'i2v.sqlite3'}"
    [job_id] = await enqueue_jobs(url, 1, make_input(tmp_path / "inputs"), size=(64, 64), steps=10)
    pool = WorkerPool(tmp_path / "logs")
    db = Db(url)
    seen: list[tuple[str, int, int]] = []
    try:
        with serving(Hub(REPO, files, delays_s={f: STAGGER_S * i for i, f in enumerate(weights)})) as hub:
            env = worker_env(
                url,
                tmp_path / "outputs",
                WORKER_ID="fresh",
                I2V_MODEL=REPO,
                I2V_DEVICE="cpu",
                SAFETY_MODEL="none",
                HF_ENDPOINT=hub.url,
                HF_HOME=tmp_path / "hf",
                HF_HUB_DISABLE_XET=1,
                HF_HUB_OFFLINE=0,
            )
            env.pop("HF_HUB_CACHE", None)
            proc = pool.start(env, "--drain", name="fresh")
            while proc.popen.poll() is None:
                row = await db.worker("fresh")
                if row is not None and row.download_model is not None:
                    # a row naming a model gives its bytes too (jobs.workers.record_download)
                    done, tot = row.download_done_bytes, row.download_total_bytes
                    assert done is not None and tot is not None, (done, tot)
                    seen.append((row.download_model, done, tot))
                await asyncio.sleep(0.05)
            assert await proc.wait(timeout=240) == 0, proc.log()[-3000:]
        jobs = await db.jobs([job_id])
        row = await db.worker("fresh")
    finally:
        await db.close()
        assert not pool.cleanup()
    log = proc.log()
    assert jobs[job_id].status == JobStatus.SUCCEEDED, log[-3000:]
    assert row is not None and row.download_model is None and row.download_done_bytes is None
    # the row said so while it downloaded: the model, bytes climbing, never past the total
    assert len(seen) >= 2, (seen, log[-3000:])
    assert {model for model, _, _ in seen} == {"i2vgenxl"}
    assert all(0 < done <= tot for _, done, tot in seen)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    assert max(tot for _, _, tot in seen) == total
    assert "downloading I2VGen-XL: 0.0 of 0.0 GB (100 %)" in log
    assert sorted(hub.fetched) == sorted(fetched)  # each once, what the pipeline loads only
