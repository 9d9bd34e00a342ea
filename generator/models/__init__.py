"""The model backends, one per model family, behind one interface (:class:`generator.models.base.VideoBackend`).

=============  ==================================  ===================  =====================
key            backend                             pipeline class       source setting
=============  ==================================  ===================  =====================
``i2vgenxl``   :mod:`generator.models.i2vgenxl`    I2VGenXLPipeline     ``I2V_MODEL``
``wan22-5b``   :mod:`generator.models.wan`         WanImageToVideo...   ``I2V_MODEL_WAN``
``ltxv``       :mod:`generator.models.ltx`         LTXConditionPipeline ``I2V_MODEL_LTX``
=============  ==================================  ===================  =====================

This package's ``__init__`` imports no torch (the bot may read :data:`BACKENDS` and :data:`SOURCE_SETTINGS`);
:func:`backend_class` imports the backend's module, and with it torch and diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from generator.models.base import VideoBackend

I2VGENXL = "i2vgenxl"
WAN22_5B = "wan22-5b"
LTXV = "ltxv"
# key -> (module, class), in the order the models were added
BACKENDS: dict[str, tuple[str, str]] = {
    I2VGENXL: ("generator.models.i2vgenxl", "I2VGenXLBackend"),
    WAN22_5B: ("generator.models.wan", "WanBackend"),
    LTXV: ("generator.models.ltx", "LTXBackend"),
}
# key -> the setting naming its weights (a hub id, a folder, or tiny)
SOURCE_SETTINGS: dict[str, str] = {I2VGENXL: "I2V_MODEL", WAN22_5B: "I2V_MODEL_WAN", LTXV: "I2V_MODEL_LTX"}


def backend_class(key: str) -> type[VideoBackend]:
    """The backend class of model ``key``; raises ValueError naming the known keys."""
    if key not in BACKENDS:
        raise ValueError(f"unknown model {key!r}: the models are {', '.join(BACKENDS)}")
    module, name = BACKENDS[key]
    cls: type[VideoBackend] = getattr(importlib.import_module(module), name)
    return cls
