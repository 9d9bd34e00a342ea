"""A Discord-compatible fake on 127.0.0.1 for end-to-end tests of the real discord.py client (see README.md)."""

from .faults import Fault
from .options import Option
from .records import GatewayFrame, RecordedFile, RecordedRequest
from .server import FakeDiscord
from .state import FakeAttachment, FakeGuild, FakeInteraction, FakeMember
from .world import FakeTimeout

__all__ = [
    "FakeAttachment",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMember",
    "FakeTimeout",
    "Fault",
    "GatewayFrame",
    "Option",
    "RecordedFile",
    "RecordedRequest",
]
