"""Make the ``fake_discord`` fixture available to this directory's tests (the root conftest may also load it).

Imported by its ``tests.fakediscord`` name, so the fixture's FakeDiscord is the class these tests import.
"""

from tests.fakediscord.plugin import fake_discord

__all__ = ["fake_discord"]
