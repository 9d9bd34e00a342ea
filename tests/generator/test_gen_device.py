"""generator.device: no silent CPU fallback for the real model, the reason for each machine torch can describe, and
``python -m generator.worker check`` as an admin runs it on a worker host (a real subprocess on this CPU machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.device import GIB, CudaState, NoUsableGPU, cuda_problem, device_report, probe_cuda, resolve_device
from generator.model_source import ModelLoadError
from generator.models.i2vgenxl import I2VGenXLBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL = "ali-vilab/i2vgen-xl"
CPU_BUILD = CudaState("2.13.0+cpu", None, None, 0)
NO_DRIVER = CudaState("2.13.0+cu130", "13.0", None, 0)
OLD_DRIVER = CudaState("2.13.0+cu130", "13.0", "12.4", 0, init_warning="The NVIDIA driver on your system is too old")
HIDDEN = CudaState("2.13.0+cu130", "13.0", "13.0", 0)
A_4090 = CudaState("2.13.0+cu130", "13.0", "13.0", 1, (("NVIDIA GeForce RTX 4090", 24 * GIB),))
A_12GB = CudaState("2.13.0+cu130", "13.0", "13.0", 1, (("NVIDIA GeForce RTX 3060", 12 * GIB),))


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (CPU_BUILD, "this torch (2.13.0+cpu) is a CPU-only build: install its CUDA build"),
        (
            NO_DRIVER,
            "no NVIDIA driver was found (torch 2.13.0+cu130 is built for CUDA 13.0): install an NVIDIA driver "
            "that supports CUDA 13.0 or newer",
        ),
        (
            OLD_DRIVER,
            "the NVIDIA driver supports CUDA up to 12.4, but torch 2.13.0+cu130 is built for CUDA 13.0: update "
            "the driver",
        ),
        (HIDDEN, "torch 2.13.0+cu130 (CUDA 13.0, driver for CUDA 13.0) sees no CUDA device"),
    ],
)
def test_the_real_model_refuses_the_cpu_with_the_reason(state: CudaState, says: str) -> None:
    assert says in (cuda_problem(state) or "")
    with pytest.raises(NoUsableGPU) as refused:
        resolve_device(None, REAL, state)
    assert says in str(refused.value) and "I2V_DEVICE=cpu" in str(refused.value)
    assert isinstance(refused.value, ModelLoadError)  # the worker and the CLI report it as a failed model load
    with pytest.raises(NoUsableGPU, match="I2V_DEVICE='cuda:0' asks for a GPU"):
        resolve_device("cuda:0", REAL, state)
    assert resolve_device("cpu", REAL, state) == torch.device("cpu")  # on purpose
    assert resolve_device(None, "tiny", state) == torch.device("cpu")  # the test model needs no GPU


def test_a_usable_gpu_is_chosen_and_a_bad_name_is_refused() -> None:
    assert cuda_problem(A_4090) is None
    assert resolve_device(None, REAL, A_4090) == torch.device("cuda")
    assert resolve_device("cuda:0", REAL, A_4090) == torch.device("cuda:0")
    with pytest.raises(ValueError, match="I2V_DEVICE='gpu please' is not a torch device name"):
        resolve_device("gpu please", REAL, A_4090)


def test_loading_the_real_model_on_this_cpu_machine_fails_before_any_download(tmp_path: Path) -> None:
    if probe_cuda().usable:
        pytest.skip("this machine has a usable GPU: the refusal is shown above with built machine states")
    with pytest.raises(NoUsableGPU, match="no CUDA device is usable"):
        I2VGenXLBackend.load(REAL)


def test_the_report_names_the_build_the_device_and_a_memory_warning() -> None:
    big = device_report(REAL, None, A_4090)
    assert big.fine == [
        "torch 2.13.0+cu130 (CUDA 13.0); NVIDIA driver for CUDA up to 13.0",
        "GPU 0: NVIDIA GeForce RTX 4090, 24.0 GiB",
        f"I2V_MODEL={REAL} runs on GPU 0 (NVIDIA GeForce RTX 4090)",
    ]
    assert big.warnings == big.problems == []
    small = device_report(REAL, None, A_12GB)
    (warning,) = small.warnings
    assert warning.startswith(
        "GPU 0 (NVIDIA GeForce RTX 3060) has 12.0 GiB, less than these presets need: standard "
        "(512p, 16 frames) about 14 GiB, quick (512p, 8 frames) about 14 GiB, high (768p, 24 "
        "frames) about 18 GiB"
    )
    assert small.problems == []
    assert device_report("tiny", None, A_12GB).warnings == []  # the test model needs next to nothing
    none = device_report(REAL, None, OLD_DRIVER)
    assert len(none.problems) == 1 and none.warnings == []
    on_purpose = device_report(REAL, "cpu", OLD_DRIVER)
    assert on_purpose.problems == [] and len(on_purpose.warnings) == 1
    assert on_purpose.warnings[0].startswith(f"I2V_DEVICE=cpu: I2V_MODEL={REAL} runs on the CPU (the NVIDIA driver")
    assert device_report(REAL, "cuda:1", A_4090).problems == [
        "I2V_DEVICE='cuda:1': there is no CUDA device 1 (1 visible)"
    ]


def _run(args: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("I2V_", "DATABASE_URL", "OUTPUT_DIR"))}
    env.update({"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "HF_HOME": str(cwd / "hf")}, **settings)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_worker_check_on_this_cpu_machine(tmp_path: Path) -> None:
    refused = _run(["generator.worker", "check"], tmp_path, I2V_MODEL="tiny-folder/")
    assert refused.returncode == 2
    assert refused.stdout.splitlines()[0] == f"ok: torch {torch.__version__} (CPU only)"
    assert refused.stderr.splitlines() == [
        "i2v-worker: no CUDA device is usable: this torch (2.13.0+cpu) is a CPU-only build: install its CUDA build "
        "(scripts/bootstrap installs torch 2.13.0, built for CUDA 13.0 on Linux x86-64; TORCH_SPEC picks another "
        "build). Or set I2V_DEVICE=cpu to run it on the CPU anyway (a video then takes hours)",
        "i2v-worker: I2V_MODEL='tiny-folder/': there is no such folder",
    ]
    warned = _run(["generator.worker", "check"], tmp_path, I2V_MODEL="tiny", I2V_DEVICE="cpu")
    assert warned.returncode == 0 and warned.stderr == "", warned.stderr
    assert "ok: I2V_MODEL=tiny runs on the CPU (the tiny test model)" in warned.stdout
    for line in (
        "I2V_MODEL=tiny: its config files are usable (I2VGen-XL)",  # tiny: every model, each checked
        "I2V_MODEL_WAN=tiny: its config files are usable (Wan 2.2 (5B))",
        "I2V_MODEL_LTX=tiny: its config files are usable (LTX-Video (fast))",
    ):
        assert f"ok: {line}" in warned.stdout, warned.stdout
    assert warned.stdout.splitlines()[-1] == "this worker can start"
    as_json = _run(["generator.device"], tmp_path, I2V_DEVICE="cpu")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["problems"] == [] and report["warnings"][0].startswith(f"I2V_DEVICE=cpu: I2V_MODEL={REAL} runs on")
