"""Errors the bot shows to users: each carries one short sentence, sent ephemerally by the tree's error funnel."""

from __future__ import annotations

from discord import app_commands

from jobs.errors import Sentence


class UserFacingError(Sentence, app_commands.AppCommandError):
    """A refusal with a message meant for the user who asked (bad input, not allowed, nothing to do); an
    ``AppCommandError``, so a command's refusal reaches the tree's error funnel as it is."""


class NotYours(UserFacingError):
    """Someone pressed a button or named a job that belongs to another user."""


class NoSuchJob(UserFacingError):
    """The job named does not exist (or was never this user's)."""
