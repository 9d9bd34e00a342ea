"""The page's own delivery: finished web jobs are marked delivered (the page shows them from the store), and a
succeeded one's MP4 is also written to its disk copy in OUTPUT_DIR (``jobs.copies``) unless SAVE_OUTPUT_COPY is
false."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from jobs.blobs import DATABASE_BLOBS
from jobs.copies import write_copy
from jobs.listings import undelivered_web_jobs
from jobs.models import JobStatus
from jobs.safety import UnsafePolicy, Verdict, withheld_message, withhold_video
from jobs.transitions import mark_delivered
from web.config import WebConfig
from web.context import Sessions

log = logging.getLogger(__name__)

DELIVERY_INTERVAL_SECONDS = 1.0  # how often finished web jobs are looked for


async def deliver_web_jobs(config: WebConfig, sessions: Sessions, readers: Sessions) -> list[int]:
    """One pass: mark every finished web job delivered, writing the disk copy first. Returns their ids."""
    async with readers() as session:
        jobs = await undelivered_web_jobs(session)
    done: list[int] = []
    for job in jobs:
        path: Path | None = None
        withheld = job.status == JobStatus.SUCCEEDED and job.output_verdict == Verdict.UNSAFE.value
        if (
            not withheld
            and job.status == JobStatus.SUCCEEDED
            and config.save_output_copy
            and job.finished_at is not None
        ):
            async with readers() as session:
                data = await DATABASE_BLOBS.read_video(session, job.id)
            if data is not None:
                path = await asyncio.to_thread(write_copy, config.output_dir, job.id, job.finished_at, data)
        async with sessions.begin() as session:
            if withheld:  # the page has no age-restricted channel: an unsafe video is never shown
                await withhold_video(session, job.id, withheld_message(UnsafePolicy.REFUSE))
                log.info("web job %s: the safety check flagged the video; withheld and deleted", job.id)
            if await mark_delivered(session, job.id, result_message_id=None, output_path=str(path) if path else None):
                done.append(job.id)
        log.info("web job %s %s%s", job.id, job.status.value, f"; saved {path}" if path else "")
    return done


async def delivery_loop(config: WebConfig, sessions: Sessions, readers: Sessions) -> None:
    """Run passes until cancelled; a failed pass is logged and retried."""
    while True:
        try:
            await deliver_web_jobs(config, sessions, readers)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("web delivery pass failed; retrying")
        await asyncio.sleep(DELIVERY_INTERVAL_SECONDS)
