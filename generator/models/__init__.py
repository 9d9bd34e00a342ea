"""The model backends, one per model family, behind one interface (:class:`generator.models.base.VideoBackend`).

=============  ==================================  ===================  =====================
key            backend                             pipeline class       source setting
=============  ==================================  ===================  =====================
``i2vgenxl``   :mod:`generator.models.i2vgenxl`    I2VGenXLPipeline     ``I2V_MODEL``
``wan22-5b``   :mod:`generator.models.wan`         WanImageToVideo...   ``I2V_MODEL_WAN``
``ltxv``       :mod:`generator.models.ltx`         LTXConditionPipeline ``I2V_MODEL_LTX``
=============  ==================================  ===================  =====================

Each model's parameter space (sizes, frame rule, ranges, presets, display name, source setting) is in
:mod:`generator.model_spaces`. This package's ``__init__`` imports no torch (the bot may read :data:`BACKENDS`);
:func:`backend_class` imports the backend's module, and with it torch and diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from generator.model_spaces import I2VGENXL, LTXV, MODEL_KEYS, WAN22_5B

if TYPE_CHECKING:
    from generator.models.base import VideoBackend


# key -> (module, class), in generator.model_spaces' order
BACKENDS: dict[str, tuple[str, str]] = {
    I2VGENXL: ("generator.models.i2vgenxl", "I2VGenXLBackend"),
    WAN22_5B: ("generator.models.wan", "WanBackend"),
    LTXV: ("generator.models.ltx", "LTXBackend"),
}


def backend_class(key: str) -> type[VideoBackend]:
    """The backend class of model ``key``; raises ValueError naming the known keys."""
    if key not in BACKENDS:
        raise ValueError(f"unknown model {key!r}: the models are {', '.join(BACKENDS)}")
    module, name = BACKENDS[key]
    cls: type[VideoBackend] = getattr(importlib.import_module(module), name)
    return cls


if tuple(BACKENDS) != MODEL_KEYS:  # pragma: no cover - a model space without a backend, or the reverse
    raise ImportError(f"backends {tuple(BACKENDS)} do not match the model spaces {MODEL_KEYS}")
