"""Deleting what the bot keeps of people's pictures and videos: in the job store and the bot's disk copies.

Used by the Delete button under a video, by ``/delete-my-data`` (a user for themselves, an operator for anyone) and,
through ``bot.monitor``, by retention. The job rows stay (statistics, quota ledger, audit log).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.delivery import remove_disk_copies

if TYPE_CHECKING:
    from bot.app import I2VBot
    from jobs.retention import UserDataDeleted

log = logging.getLogger(__name__)


async def delete_stored_video(bot: I2VBot, job_id: int) -> bool:
    """Delete one job's stored MP4 and its disk copy; True when anything was there."""
    from jobs.retention import delete_job_video

    async with bot.sessions.begin() as session:
        stored = await delete_job_video(session, job_id)
    copies = await remove_disk_copies(bot, [job_id])
    log.info("deleted the video of job %s (stored: %s, disk copies: %d)", job_id, stored, copies)
    return stored or copies > 0


async def delete_user_data(bot: I2VBot, user_id: int, *, by: int) -> UserDataDeleted:
    """Delete every stored image and video of ``user_id``'s jobs and the disk copies (audited, actor ``by``)."""
    from jobs.retention import delete_user_data as delete_in_store

    async with bot.sessions.begin() as session:
        deleted = await delete_in_store(session, user_id, by=by)
    copies = await remove_disk_copies(bot, deleted.job_ids)
    log.info("user %s's data deleted by %s: %d job(s), %d disk copies, still running %s", user_id, by,
             len(deleted.job_ids), copies, deleted.still_running)
    if bot.monitor is not None:
        bot.monitor.wake()
    return deleted
