"""bench/generate.py: the CPU smoke runs (every backend's tiny model; I2VGen-XL's one path and all three), the
full-size architectures' parameter counts and I2VGen-XL's UNet FLOPs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "bench" / "generate.py"
# The runs below that generate use the smallest resolution: the sample image then gives 448x256 (832x512 at the
# presets' 512p), which cuts each run's UNet and VAE work by 3.7x; the real 512p size is generated in
# test_gen_pipeline.py.
SMALL_RESOLUTION = "256p"
SMALL_SIZE_PX = (448, 256)


def _bench(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env = {k: v for k, v in env.items() if not k.startswith("I2V_")}  # the "ours" path reads I2V_* settings
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "bench.generate", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_every_backend_runs_its_tiny_model_on_the_cpu(tmp_path: Path) -> None:
    """``python -m bench.generate`` on the CPU: every backend at its quick preset's size (9 frames and 10 steps,
    which every model accepts, to keep it short), timed."""
    out = tmp_path / "models.json"
    proc = _bench("--frames", "9", "--steps", "10", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert list(results) == ["i2vgenxl", "wan22-5b", "ltxv"]
    sizes = {key: (r["width"], r["height"]) for key, r in results.items()}
    assert sizes == {"i2vgenxl": (832, 512), "wan22-5b": (800, 480), "ltxv": (864, 512)}  # each model's quick size
    for key, result in results.items():
        assert (result["model_key"], result["device"], result["model"], result["preset"]) == (
            key,
            "cpu",
            "tiny",
            "quick",
        )
        assert (result["frames"], result["steps"]) == (9, 10)
        assert 0 < result["s_per_step"] < result["denoise_s"] < result["s_per_video"]
        assert 0 < result["decode_s"] < result["s_per_video"]
        assert result["mp4_bytes"] > 0 and result["peak_gpu_gib"] is None and result["unet_flop_per_step"] > 0
    assert results["ltxv"]["guidance"] == 1.0  # the distilled model's preset
    for measure in ("s_per_step", "decode_s", "s_per_video", "peak_gpu_gib"):
        assert measure in proc.stdout  # the side-by-side table


def test_an_override_outside_a_models_space_is_refused(tmp_path: Path) -> None:
    proc = _bench("--models", "ltxv", "--steps", "30")
    assert proc.returncode == 2 and "steps 30 is not allowed" in proc.stderr and "LTX-Video" in proc.stderr
    proc = _bench("--models", "wan22-5b,ltxv", "--all-paths")
    assert proc.returncode == 2 and "use --models i2vgenxl" in proc.stderr
    proc = _bench("--models", "svd")
    assert proc.returncode == 2 and "unknown model 'svd'" in proc.stderr


def test_cpu_smoke_run_reports_timings(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench("--models", "i2vgenxl", "--preset", "quick", "--resolution", SMALL_RESOLUTION, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert (result["device"], result["model"], result["preset"]) == ("cpu", "tiny", "quick")
    assert (result["width"], result["height"], result["frames"], result["steps"]) == (*SMALL_SIZE_PX, 8, 30)
    assert 0 < result["s_per_step"] < result["denoise_s"] < result["s_per_video"]
    assert 0 < result["decode_s"] < result["s_per_video"]
    assert result["mp4_bytes"] > 0 and result["peak_gpu_gib"] is None
    assert "s_per_step" in proc.stdout


def test_full_size_architectures_have_the_released_parameter_counts(tmp_path: Path) -> None:
    out = tmp_path / "counts.json"
    proc = _bench("--count-only", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(out.read_text())
    assert counts["i2vgenxl"] == {
        "unet": 1_420_469_224,
        "image_encoder": 632_076_800,
        "text_encoder": 352_984_064,
        "vae": 83_653_863,
        "total": 2_489_183_951,
    }
    assert counts["wan22-5b"]["transformer"] == 4_999_787_712 and counts["ltxv"]["transformer"] == 13_042_569_344
    assert "13,042,569,344 parameters" in proc.stdout


def _load_bench_module():
    spec = importlib.util.spec_from_file_location("bench_generate", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_all_paths_side_by_side_on_the_tiny_model(tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    proc = _bench(
        "--models",
        "i2vgenxl",
        "--all-paths",
        "--preset",
        "quick",
        "--resolution",
        SMALL_RESOLUTION,
        "--steps",
        "10",
        "--peak-tflops",
        "100",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert list(results) == ["reference", "plain", "ours"]
    for path, result in results.items():
        assert result["path"] == path and result["device"] == "cpu" and result["model"] == "tiny"
        assert (result["width"], result["height"], result["frames"], result["steps"]) == (*SMALL_SIZE_PX, 8, 10)
        assert 0 < result["s_per_step"] < result["denoise_s"] < result["s_per_video"] <= result["first_video_s"]
        assert result["mp4_bytes"] > 0
        assert result["peak_tflops"] == 100.0
        assert result["fraction_of_peak"] == pytest.approx(result["denoise_tflops"] / 100.0, rel=1e-3, abs=1e-6)
        # the same tiny model and seed: every path ends on the same latents (fp32 on the CPU)
        assert result["latents_rel_error_vs_reference"] is not None
        assert result["latents_rel_error_vs_reference"] < 1e-5
    assert results["reference"]["options"]["decode_chunk_size"] == 1
    assert results["reference"]["options"]["cpu_offload"] is False  # no offload without CUDA
    assert results["ours"]["options"] == {
        "dtype": None,
        "sdpa_backend": "auto",
        "compile_unet": False,
        "compile_mode": "default",
        "warmup_shapes": None,
        "channels_last": False,
        "fuse_qkv": False,
        "decode_chunk_size": None,
        "vae_tiling": False,
        "cpu_offload": False,
    }
    flops = {r["unet_flop_per_step"] for r in results.values()}
    assert len(flops) == 1 and flops.pop() > 0
    # the FLOPs counted from the recorded call equal those of the pipeline's documented UNet shapes
    bench = _load_bench_module()
    from generator.models.tiny import build_tiny_i2vgenxl

    config = build_tiny_i2vgenxl().unet.config  # type: ignore[attr-defined]  # mypy sees diffusers' placeholder class; pipeline modules are set at runtime
    args, kwargs = bench.pipeline_unet_shapes(config, *SMALL_SIZE_PX, 8, bench.torch.float32, vae_factor=16)
    assert bench.count_unet_flops(config, args, kwargs) == results["ours"]["unet_flop_per_step"]
    assert "speedup_vs_reference" in proc.stdout and "latents_rel_error_vs_reference" in proc.stdout


def test_ours_path_reads_the_performance_settings(tmp_path: Path) -> None:
    out = tmp_path / "ours.json"
    proc = _bench(
        "--models",
        "i2vgenxl",
        "--path",
        "ours",
        "--preset",
        "quick",
        "--resolution",
        SMALL_RESOLUTION,
        "--steps",
        "10",
        "--json",
        str(out),
        extra_env={"I2V_DECODE_CHUNK_SIZE": "2", "I2V_CHANNELS_LAST": "1", "I2V_DTYPE": "bf16"},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["dtype"] == "bfloat16"
    assert (result["options"]["decode_chunk_size"], result["options"]["channels_last"]) == (2, True)
    bad = _bench("--models", "i2vgenxl", "--path", "ours", "--preset", "quick", extra_env={"I2V_SDPA_BACKEND": "flash"})
    assert bad.returncode != 0 and "I2V_SDPA_BACKEND=flash" in bad.stderr


def test_full_size_unet_flops_per_preset() -> None:
    proc = _bench("--flops-only")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "case=" in line]
    rows = [dict(item.split("=", 1) for item in line.split("  ")) for line in lines]
    by_case = {(r["case"], r["shape"]): r for r in rows}
    standard_square = by_case[("standard", "square")]
    assert (standard_square["width"], standard_square["height"], standard_square["frames"]) == ("512", "512", "16")
    # the estimate: a standard job is about 2.1 PFLOP of UNet work
    assert float(standard_square["unet_pflop_per_video"]) == pytest.approx(2.1, rel=0.05)
    assert ("1024p / 32 frames", "sample image") in by_case
    per_step = [
        float(by_case[(case, "square")]["unet_tflop_per_step"])
        for case in ("quick", "standard", "high", "1024p / 32 frames")
    ]
    assert per_step == sorted(per_step) and per_step[1] == pytest.approx(2 * per_step[0], rel=0.05)


def test_bad_peak_is_refused() -> None:
    proc = _bench("--models", "i2vgenxl", "--peak-tflops", "0", "--preset", "quick")
    assert proc.returncode != 0 and "--peak-tflops" in proc.stderr
