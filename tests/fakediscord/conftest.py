"""Make the ``fake_discord`` fixture available to this directory's tests (the root conftest may also load it)."""

from .plugin import fake_discord

__all__ = ["fake_discord"]
