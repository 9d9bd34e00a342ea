"""``/queue`` (your jobs with position, ETA and state; the queue's length) and ``/cancel [job]``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import NoSuchJob
from bot.job_choices import job_id_choices
from bot.render import render_my_queue
from bot.requests import cancel_job_for, load_own_job
from jobs.queue import queue_positions, user_jobs

if TYPE_CHECKING:
    from bot.app import I2VBot

QUEUE_LIST_LIMIT = 10  # jobs listed by /queue
WITHHELD_SHOWN = timedelta(days=1)  # how long /queue mentions a video the safety check kept out of its channel


class Queue(commands.Cog):
    """The user's view of the queue."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue")
    async def queue(self, interaction: discord.Interaction) -> None:
        """Show your queued and running videos, their place in the queue and when they should start."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        now = datetime.now(UTC)
        async with self.bot.readers() as session:
            places = await queue_positions(session, now=now)
            mine = sorted(await user_jobs(session, interaction.user.id, limit=QUEUE_LIST_LIMIT), key=lambda j: j.id)
            recent = await user_jobs(session, interaction.user.id, pending_only=False, limit=QUEUE_LIST_LIMIT)
        withheld = [job for job in recent if job.withheld_at is not None and now - job.withheld_at < WITHHELD_SHOWN]
        await interaction.followup.send(render_my_queue(mine, places, now, withheld=withheld), ephemeral=True)

    @app_commands.command(name="cancel")
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1] | None = None) -> None:
        """Cancel one of your videos: queued ones are refunded, running ones stop and cost the time used.

        Parameters
        ----------
        job:
            The job number (from /queue); your latest queued or running job if empty.
        """
        await interaction.response.defer(ephemeral=True, thinking=True)
        if job is None:
            async with self.bot.readers() as session:
                latest = await user_jobs(session, interaction.user.id, limit=1)
            job = latest[0].id if latest else None
            if job is None:
                raise NoSuchJob("You have no queued or running video to cancel.")
        target = await load_own_job(self.bot, interaction, job, "cancel", server_admins=True)
        await interaction.followup.send(await cancel_job_for(self.bot, target), ephemeral=True)

    @cancel.autocomplete("job")
    async def cancel_job_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        """The caller's own queued and running jobs."""
        return await job_id_choices(self.bot, interaction, current, own=True)


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Queue(bot))
