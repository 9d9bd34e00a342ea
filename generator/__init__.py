"""Everything about making a video: parameters, image preparation, the diffusers pipeline, MP4 encoding, the worker.

Never imports discord. Only the model backends in ``generator.models`` (one module per model family, the tiny
models in ``generator.models.tiny``) and what they are built from (``generator.performance``, the speed and memory
options; ``generator.model_source``, where a model comes from) import torch and diffusers, so the bot can import
``generator.params``, ``generator.images``, ``generator.models`` (the registry), ``generator.model_files`` (the
``check`` command's look at a model's config files) and ``generator.supervisor`` without torch.
"""
