"""Errors the bot shows to users: each carries one short sentence, sent ephemerally by the tree's error funnel."""

from __future__ import annotations

from discord import app_commands


class UserFacingError(app_commands.AppCommandError):
    """A refusal with a message meant for the user who asked (bad input, not allowed, nothing to do)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotYours(UserFacingError):
    """Someone pressed a button or named a job that belongs to another user."""


class NoSuchJob(UserFacingError):
    """The job named does not exist (or was never this user's)."""
