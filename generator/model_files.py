"""Check a model source's config files without torch and without the weights (``python -m bot check``).

``tiny`` needs nothing. A local folder needs ``model_index.json`` and, for each component it names, the
component's folder with its config file, all parseable JSON. A hub id needs those files in the Hugging Face cache,
or the hub reachable within :data:`HUB_TIMEOUT_S` (a machine without network fails fast, with one line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TINY_MODEL = "tiny"
MODEL_INDEX = "model_index.json"
# The config file each kind of component is saved with (the first that exists is read).
COMPONENT_CONFIGS = ("config.json", "scheduler_config.json", "preprocessor_config.json", "tokenizer_config.json")
HUB_TIMEOUT_S = 5.0  # one request to the hub for the model's index
SETTING = "I2V_MODEL"


def looks_like_path(model: str) -> bool:
    """Whether ``model`` is written like a folder (not a ``owner/name`` hub id)."""
    return model.startswith(("/", "./", "../", "~", os.sep)) or model.endswith(("/", os.sep))


def _read_json(path: Path) -> tuple[dict[str, object] | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        return None, f"{path.name} cannot be read: {error.strerror or error}"
    except ValueError as error:
        return None, f"{path.name} is not valid JSON: {error}"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    return data, None


def components(index: dict[str, object]) -> list[str]:
    """The components ``model_index.json`` names (entries ``name: [library, class]`` with a library)."""
    return sorted(
        k
        for k, v in index.items()
        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None
    )


def check_model_folder(model: str, folder: Path, *, setting: str = SETTING) -> list[str]:
    """One line per problem with a local model folder's config files."""
    prefix = f"{setting}={model!r}:"
    index, error = _read_json(folder / MODEL_INDEX)
    if index is None:
        missing = not (folder / MODEL_INDEX).exists()
        return [f"{prefix} {MODEL_INDEX} is missing" if missing else f"{prefix} {error}"]
    problems = []
    for name in components(index):
        sub = folder / name
        if not sub.is_dir():
            problems.append(f"{prefix} the {name} component's folder is missing")
            continue
        config = next((sub / c for c in COMPONENT_CONFIGS if (sub / c).is_file()), None)
        if config is None:
            problems.append(f"{prefix} {name}/ has no config file ({', '.join(COMPONENT_CONFIGS)})")
            continue
        _, error = _read_json(config)
        if error is not None:
            problems.append(f"{prefix} {name}/{error}")
    return problems


def check_hub(model: str, *, timeout_s: float = HUB_TIMEOUT_S, setting: str = SETTING) -> list[str]:
    """Problems with a hub id: its index in the cache (then its components' configs too), else the hub reachable."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    prefix = f"{setting}={model!r}:"
    try:
        cached = try_to_load_from_cache(model, MODEL_INDEX)
    except ValueError as error:  # not a valid repo id
        return [f"{prefix} is neither a folder nor a Hugging Face repo id ({error})"]
    if isinstance(cached, str):
        index, problem = _read_json(Path(cached))
        if index is None:
            return [f"{prefix} the cached {problem}"]
        problems = []
        for name in components(index):
            found = [p for c in COMPONENT_CONFIGS if isinstance(p := try_to_load_from_cache(model, f"{name}/{c}"), str)]
            if not found:
                problems.append(
                    f"{prefix} {name}'s config is not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
                    "it is downloaded at the first start"
                )
        return problems if constants.HF_HUB_OFFLINE else []
    if constants.HF_HUB_OFFLINE:
        return [f"{prefix} not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set"]
    try:
        get_hf_file_metadata(hf_hub_url(model, MODEL_INDEX), timeout=timeout_s)
    except Exception as error:  # noqa: BLE001 - network, HTTP and repo errors all come down to one line
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return [
            f"{prefix} not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub cannot be reached: {reason}"
        ]
    return []


def check_model_source(model: str, *, hub_timeout_s: float = HUB_TIMEOUT_S, setting: str = SETTING) -> list[str]:
    """One line per problem with ``model`` (the value of ``setting``: I2V_MODEL, I2V_MODEL_WAN or I2V_MODEL_LTX);
    empty when the config files are usable."""
    model = model.strip()
    if model == TINY_MODEL:
        return []
    folder = Path(model).expanduser()
    if folder.is_dir():
        return check_model_folder(model, folder, setting=setting)
    if looks_like_path(model) or folder.exists():
        return [f"{setting}={model!r}: there is no such folder"]
    return check_hub(model, timeout_s=hub_timeout_s, setting=setting)
