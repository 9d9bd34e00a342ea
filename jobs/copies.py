"""The disk copies of finished videos: ``OUTPUT_DIR/video_YYYYMMDD_HHMMSS_<job>.mp4``, the seed's output folder.

The store keeps every video (``jobs.blobs``); the process that delivers a succeeded job (the bot for Discord jobs,
the page for web jobs) also writes this copy unless SAVE_OUTPUT_COPY is false, and records its path on the job.
Whatever removes a video's stored bytes (the Delete button, delete-my-data, retention in ``jobs.maintenance``, a
withheld unsafe video) removes its copies with :func:`remove_copies`. Every function here does file I/O: call it
off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path


def output_filename(job_id: int, when: datetime | None) -> str:
    """``video_YYYYMMDD_HHMMSS_<job>.mp4`` of a job that finished at ``when`` (now when None), in UTC: the seed's
    name plus the job id. The name of the disk copy, and of the file a download or a Discord attachment carries."""
    when = when or datetime.now(UTC)
    return f"video_{when.astimezone(UTC):%Y%m%d_%H%M%S}_{job_id}.mp4"


def write_copy(output_dir: Path, job_id: int, finished_at: datetime | None, data: bytes) -> Path:
    """Write ``data`` as the job's disk copy, atomically (a reader never sees half a file); returns its path."""
    path = output_dir / output_filename(job_id, finished_at)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def disk_copies(output_dir: Path, job_id: int) -> list[Path]:
    """The disk copies of one job's video in ``output_dir``."""
    return sorted(output_dir.glob(f"video_*_{job_id}.mp4"))


def remove_copies(output_dir: Path, job_ids: Iterable[int]) -> int:
    """Delete the disk copies of these jobs' videos; returns how many files went."""
    removed = 0
    for job_id in job_ids:
        for path in disk_copies(output_dir, job_id):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
