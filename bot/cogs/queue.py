"""``/queue`` (your jobs with position, ETA and state; the queue's length) and ``/cancel [job]``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import JobNotFound
from bot.status import neutralise_mentions
from bot.views import load_job, require_owner

if TYPE_CHECKING:
    from bot.app import I2VBot

QUEUE_LIST_LIMIT = 10  # jobs listed by /queue


class Queue(commands.Cog):
    """The user's view of the queue."""

    def __init__(self, bot: I2VBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue")
    async def queue(self, interaction: discord.Interaction) -> None:
        """Show your queued and running videos, their place in the queue and when they should start."""
        from jobs.models import JobStatus
        from jobs.queue import queue_positions, user_jobs

        await interaction.response.defer(ephemeral=True, thinking=True)
        now = datetime.now(timezone.utc)
        async with self.bot.readers() as session:
            places = await queue_positions(session, now=now)
            mine = sorted(await user_jobs(session, interaction.user.id, limit=QUEUE_LIST_LIMIT), key=lambda j: j.id)
        running_total = sum(1 for place in places.values() if place.position == 0)
        queued_total = len(places) - running_total
        lines = []
        for job in mine:
            if job.status == JobStatus.RUNNING:
                progress = f", step {job.progress_step}/{job.progress_total}" if job.progress_total else ""
                lines.append(f"• #{job.id} running ({job.phase.value}{progress}): {_short(job.prompt)}")
            else:
                place = places.get(job.id)
                if place is not None:
                    eta = ""
                    if place.eta_seconds is not None:
                        eta = f", ready <t:{int(now.timestamp() + place.eta_seconds)}:R>"
                    lines.append(f"• #{job.id} queued, position {place.position}{eta}: {_short(job.prompt)}")
        header = f"Queue: {queued_total} waiting, {running_total} running."
        body = "\n".join(lines) if lines else "You have no queued or running videos."
        await interaction.followup.send(f"{header}\n{body}", ephemeral=True)

    @app_commands.command(name="cancel")
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1] | None = None) -> None:
        """Cancel one of your videos: queued ones are refunded, running ones stop and cost the time used.

        Parameters
        ----------
        job:
            The job number (from /queue); your latest queued or running job if empty.
        """
        from bot.actions import cancel_job_for
        from jobs.queue import user_jobs

        await interaction.response.defer(ephemeral=True, thinking=True)
        if job is None:
            async with self.bot.readers() as session:
                latest = await user_jobs(session, interaction.user.id, limit=1)
            job = latest[0].id if latest else None
            if job is None:
                raise JobNotFound("You have no queued or running video to cancel.")
        target = await load_job(self.bot, job)
        require_owner(self.bot, interaction, target, "cancel", server_admins=True)
        await interaction.followup.send(await cancel_job_for(self.bot, target), ephemeral=True)


def _short(prompt: str, limit: int = 60) -> str:
    text = neutralise_mentions(prompt.replace("\n", " "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def setup(bot: I2VBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Queue(bot))
