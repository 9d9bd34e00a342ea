"""The job-id autocomplete of ``/cancel``, ``/admin cancel`` and ``/operator cancel``: as the user types, Discord asks
for choices and the bot offers the queued and running jobs that command may cancel, newest first, each named by its
number, state and a snippet of its prompt.

- ``/cancel``: the user's own jobs.
- ``/admin cancel``: that server's jobs, and only for an admin of it (or the operator).
- ``/operator cancel``: every server's jobs, and only for the operator.

Discord does not run a command's checks before its autocomplete, so the scope is checked here (nothing is offered
to someone the command would refuse); the command checks again when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.permissions import may_use
from bot.render import job_choice_name
from jobs.listings import cancellable_jobs

if TYPE_CHECKING:
    from bot.app import I2VBot

__all__ = ("job_id_choices",)


async def job_id_choices(
    bot: I2VBot,
    interaction: discord.Interaction,
    current: str | float,
    *,
    own: bool = False,
    guild_id: int | None = None,
) -> list[app_commands.Choice[int]]:
    """The choices for what the user typed so far (``current``, Discord's raw text): their own jobs (``own``),
    ``guild_id``'s, or every server's; none when the interaction's command would refuse them."""
    command = interaction.command
    if not isinstance(command, app_commands.Command) or not may_use(interaction, command):
        return []
    async with bot.readers() as session:
        jobs = await cancellable_jobs(
            session, search=str(current or ""), user_id=interaction.user.id if own else None, guild_id=guild_id
        )
    return [
        app_commands.Choice(name=job_choice_name(job.job_id, job.status.value, job.prompt), value=job.job_id)
        for job in jobs
    ]
