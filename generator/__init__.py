"""Everything about making a video: parameters, image preparation, the diffusers pipeline, MP4 encoding, the worker.

Never imports discord. Only ``generator.pipeline`` and what it is built from (``generator.performance``, the speed
and memory options; ``generator.model_source``, where the model comes from; ``generator.tiny``, the tiny model)
import torch and diffusers, so the bot can import ``generator.params``, ``generator.images``,
``generator.model_files`` (the ``check`` command's look at a model's config files) and ``generator.supervisor``
without torch.
"""
