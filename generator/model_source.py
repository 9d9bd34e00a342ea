"""Where the model comes from: ``tiny`` (built in code), a local folder or a Hugging Face hub id
(:mod:`generator.device` decides the torch device). :mod:`generator.model_files` checks the same sources without
torch (the ``check`` command)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from generator.model_download import fetch_pipeline
from generator.model_files import looks_like_path

FP16_VARIANT: str = "fp16"  # the hub repository's half-precision weight files

log = logging.getLogger("generator.pipeline")


class ModelLoadError(RuntimeError):
    """The model could not be loaded from the given source."""


def route_library_logs() -> None:
    """diffusers and transformers print through handlers of their own; send their records to this process's logging
    instead, which formats and masks them and holds back the lines that tell an admin nothing
    (``config.logs.LIBRARY_NOISE``: once, at DEBUG)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_default_handler()
        library.enable_propagation()


def fetched_or_hub_id(repo_id: str, label: str) -> str:
    """The local folder of hub repository ``repo_id``'s pipeline files, downloaded with its progress told
    (:mod:`generator.model_download`); where that fails (no network with a cached copy, a repository laid out
    otherwise) ``repo_id`` itself, which diffusers then loads (or refuses) its own way."""
    try:
        return fetch_pipeline(repo_id, label)
    except Exception as exc:  # noqa: BLE001 - any hub or disk error: diffusers tries again and names its own
        log.info("downloading %s (%s) ahead of loading failed; diffusers loads it itself: %s", label, repo_id, exc)
        return repo_id


def load_pretrained(
    pipeline_class: Any,
    model: str,
    dtype: torch.dtype | dict[str, torch.dtype],
    *,
    label: str,
    setting: str,
    **kwargs: Any,
) -> Any:
    """``pipeline_class.from_pretrained`` from a local folder or a hub id (the fp16 weight files first where they
    exist), in ``dtype`` (or per component: ``{"vae": torch.float32, "default": ...}``), with ``kwargs`` passed
    on; raises :class:`ModelLoadError` naming the source, the model (``label``) and the setting it came from."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        source = str(folder)
        has_fp16 = any(".fp16." in p.name for p in folder.rglob("*") if p.is_file())
        variants = [FP16_VARIANT, None] if has_fp16 else [None]
    elif looks_like_path(model):
        raise ModelLoadError(f"{setting} {model!r} looks like a folder but there is no such folder")
    else:
        source = fetched_or_hub_id(model, label)
        variants = [FP16_VARIANT, None]
    last: Exception | None = None
    for variant in variants:
        try:
            return pipeline_class.from_pretrained(source, dtype=dtype, variant=variant, **kwargs)
        except (OSError, ValueError) as exc:
            last = exc
            log.info("loading %s with variant %s failed: %s", source, variant, exc)
    raise ModelLoadError(f"could not load {label} from {model!r} ({setting}): {last}") from last
