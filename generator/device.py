"""Which torch device the model runs on, and what this machine's torch and GPU can do.

:func:`resolve_device` is the one place the device is decided: the real model runs on a CUDA GPU, and without a
usable one it refuses to load, with the reason (this torch build has no CUDA, no NVIDIA driver, a driver too old
for the CUDA this torch was built for, no visible device) and what to install, unless ``I2V_DEVICE=cpu`` asks for
the CPU on purpose. The ``tiny`` test model runs on the CPU when there is no GPU.

:func:`device_report` is the same decision as lines for ``check`` (``python -m generator.worker check``, and
``python -m bot check`` through ``python -m generator.device``, which prints it as JSON): the torch build, CUDA,
the driver, each device's name and memory, and a warning for a device with less memory than a preset needs.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass

import torch

from config.reader import CheckReport
from generator.model_files import TINY_MODEL
from generator.model_source import ModelLoadError
from generator.model_spaces import DEFAULT_PRESET
from generator.params import PRESETS

SETTING = "I2V_DEVICE"
CPU = "cpu"
GIB = 2**30
# GPU memory the real model needs per resolution, fp16, at the most frames the presets use there (GiB; the
# RTX 4090 figures of the README's requirements: 256p under 8, 512p x 16 frames 12-14, 768p x 24 frames 16-18).
MEMORY_NEED_GIB: dict[str, float] = {"256p": 8.0, "512p": 14.0, "768p": 18.0, "1024p": 22.0}
CPU_ADVICE = f"set {SETTING}=cpu to run it on the CPU anyway (a video then takes hours)"


class NoUsableGPU(ModelLoadError):
    """The real model was asked to load with no usable CUDA device; ``str()`` is the reason and the remedy."""


@dataclass(frozen=True)
class CudaState:
    """What torch can tell about CUDA on this machine (all plain values, so tests can build any machine)."""

    torch_version: str
    cuda_build: str | None  # the CUDA version torch was built for ("13.0"); None for a CPU-only build
    driver_cuda: str | None  # the highest CUDA version the installed driver supports; None when none is found
    device_count: int
    devices: tuple[tuple[str, int], ...] = ()  # (name, total memory in bytes) of each visible device
    init_warning: str = ""  # what torch said while looking (e.g. "The NVIDIA driver on your system is too old")

    @property
    def usable(self) -> bool:
        return self.device_count > 0


def _version(encoded: int) -> str | None:
    """CUDA's integer version (12040) as "12.4"; None for 0 (no driver)."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}" if encoded > 0 else None


def probe_cuda() -> CudaState:
    """Ask this process's torch; never raises. torch reports a driver problem as a warning while it counts
    devices: it is kept (as one line) instead of being printed."""
    cuda_build = torch.version.cuda
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count = torch.cuda.device_count() if cuda_build else 0
    driver = None
    get_driver = getattr(torch._C, "_cuda_getDriverVersion", None)  # CUDA builds only
    if get_driver is not None:
        try:
            driver = _version(int(get_driver()))
        except (RuntimeError, TypeError, ValueError):
            driver = None
    devices = []
    for index in range(count):
        try:
            props = torch.cuda.get_device_properties(index)
            devices.append((str(props.name), int(props.total_memory)))
        except (RuntimeError, AssertionError):  # a device that fails to answer counts as absent
            break
    said = " ".join(str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
    return CudaState(torch.__version__, cuda_build, driver, len(devices), tuple(devices), said)


def _major_minor(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def cuda_problem(state: CudaState) -> str | None:
    """Why CUDA cannot be used here, with what to install; None when a device is usable."""
    if state.usable:
        return None
    if not state.cuda_build:
        return (
            f"this torch ({state.torch_version}) is a CPU-only build: install its CUDA build "
            "(scripts/bootstrap installs torch 2.13.0, built for CUDA 13.0 on Linux x86-64; TORCH_SPEC picks "
            "another build)"
        )
    if state.driver_cuda is None:
        return (
            f"no NVIDIA driver was found (torch {state.torch_version} is built for CUDA {state.cuda_build}): "
            f"install an NVIDIA driver that supports CUDA {state.cuda_build} or newer; nvidia-smi shows it"
        )
    if _major_minor(state.driver_cuda) < _major_minor(state.cuda_build):
        return (
            f"the NVIDIA driver supports CUDA up to {state.driver_cuda}, but torch {state.torch_version} is built "
            f"for CUDA {state.cuda_build}: update the driver (nvidia-smi shows the CUDA version it supports), "
            f"or install a torch build for CUDA {state.driver_cuda} or older with TORCH_SPEC"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    said = f"; torch says: {state.init_warning}" if state.init_warning else ""
    return (
        f"torch {state.torch_version} (CUDA {state.cuda_build}, driver for CUDA {state.driver_cuda}) sees no "
        f"CUDA device{hidden}{said}"
    )


def resolve_device(device: str | None, model: str, state: CudaState | None = None) -> torch.device:
    """The torch device for ``model`` and an I2V_DEVICE value (None or empty: the GPU).

    Raises :class:`NoUsableGPU` for the real model without a usable GPU (unless ``device`` is ``cpu``) or when a
    ``cuda`` device is asked for and none is usable; ValueError for a name torch does not know.
    """
    name = (device or "").strip()
    if name:
        try:
            resolved = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"{SETTING}={name!r} is not a torch device name (try 'cpu' or 'cuda')") from exc
        if resolved.type != "cuda":
            return resolved
    state = probe_cuda() if state is None else state
    problem = cuda_problem(state)
    if name:
        if problem is not None:
            raise NoUsableGPU(f"{SETTING}={name!r} asks for a GPU, but no CUDA device is usable: {problem}")
        return torch.device(name)
    if problem is None:
        return torch.device("cuda")
    if model.strip() == TINY_MODEL:
        return torch.device(CPU)
    raise NoUsableGPU(f"no CUDA device is usable: {problem}. Or {CPU_ADVICE}")


def _memory_warning(name: str, memory_bytes: int) -> str | None:
    """A warning when a device has less memory than a preset needs (the default preset named first)."""
    short = [p for p in PRESETS.values() if memory_bytes < MEMORY_NEED_GIB[p.resolution] * GIB]
    if not short:
        return None
    short.sort(key=lambda p: (p.name != DEFAULT_PRESET, MEMORY_NEED_GIB[p.resolution]))
    needs = ", ".join(
        f"{p.name} ({p.resolution}, {p.frames} frames) about {MEMORY_NEED_GIB[p.resolution]:g} GiB" for p in short
    )
    return (
        f"{name} has {memory_bytes / GIB:.1f} GiB, less than these presets need: {needs}; cap resolution and "
        "frames per server with /admin limits, or set I2V_CPU_OFFLOAD=true"
    )


def device_report(model: str, device: str | None, state: CudaState | None = None) -> CheckReport:
    """What ``check`` says about the torch build, CUDA and the device ``model`` would run on."""
    state = probe_cuda() if state is None else state
    report = CheckReport()
    build = f"CUDA {state.cuda_build}" if state.cuda_build else "CPU only"
    driver = f"; NVIDIA driver for CUDA up to {state.driver_cuda}" if state.driver_cuda else ""
    report.fine.append(f"torch {state.torch_version} ({build}){driver}")
    for index, (name, memory) in enumerate(state.devices):
        report.fine.append(f"GPU {index}: {name}, {memory / GIB:.1f} GiB")
    try:
        chosen = resolve_device(device, model, state)
    except NoUsableGPU as exc:
        report.problems.append(str(exc))
        return report
    except ValueError as exc:
        report.problems.append(str(exc))
        return report
    if chosen.type == "cuda":
        index = chosen.index or 0
        if index >= len(state.devices):
            report.problems.append(
                f"{SETTING}={device!r}: there is no CUDA device {index} ({len(state.devices)} visible)"
            )
            return report
        name, memory = state.devices[index]
        warning = _memory_warning(f"GPU {index} ({name})", memory) if model.strip() != TINY_MODEL else None
        if warning:
            report.warnings.append(warning)
        report.fine.append(f"I2V_MODEL={model} runs on GPU {index} ({name})")
    elif model.strip() == TINY_MODEL:
        report.fine.append(f"I2V_MODEL={model} runs on the CPU (the tiny test model)")
    else:
        problem = cuda_problem(state)
        why = f" ({problem})" if problem else ""
        report.warnings.append(f"{SETTING}={chosen}: I2V_MODEL={model} runs on the CPU{why}; a video takes hours")
    return report


def main() -> int:
    """``python -m generator.device``: :func:`device_report` for I2V_MODEL and I2V_DEVICE as one JSON object
    (what ``python -m bot check`` asks, since the bot itself never imports torch)."""
    from config.reader import environment, read

    values = read(environment(), ("I2V_MODEL", SETTING))
    report = device_report(str(values["I2V_MODEL"]), str(values[SETTING]) or None)
    print(json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
