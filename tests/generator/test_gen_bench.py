"""bench/generate.py: the CPU smoke run (tiny model) and the full-size architecture's parameter counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "bench" / "generate.py"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def test_cpu_smoke_run_reports_timings(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench("--preset", "quick", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert (result["device"], result["model"], result["preset"]) == ("cpu", "tiny", "quick")
    assert (result["width"], result["height"], result["frames"], result["steps"]) == (832, 512, 8, 30)
    assert 0 < result["s_per_step"] < result["denoise_s"] < result["s_per_video"]
    assert 0 < result["decode_s"] < result["s_per_video"]
    assert result["mp4_bytes"] > 0 and result["peak_gpu_gib"] is None
    assert "s_per_step" in proc.stdout


def test_full_size_architecture_has_the_released_parameter_counts() -> None:
    proc = _bench("--count-only")
    assert proc.returncode == 0, proc.stderr
    counts = {line.split(":")[0].strip(): int(line.split(":")[1].split("parameters")[0].replace(",", ""))
              for line in proc.stdout.splitlines() if "parameters" in line}
    assert counts == {
        "unet": 1_420_469_224,
        "image_encoder": 632_076_800,
        "text_encoder": 352_984_064,
        "vae": 83_653_863,
        "total": 2_489_183_951,
    }
