"""Everything about making a video: parameters, image preparation, the diffusers pipeline, MP4 encoding, the worker.

Never imports discord. Only ``generator.pipeline`` (and the tiny-model builder it uses) imports torch and diffusers,
so the bot can import ``generator.params``, ``generator.images`` and ``generator.supervisor`` without torch.
"""
