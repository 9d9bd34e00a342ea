"""What the page shows, as JSON: a job with its parameters, place and links; refusals as plain sentences."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from generator.model_spaces import display_name
from jobs.copies import output_filename
from jobs.models import PENDING_STATUSES, Job, JobStatus
from jobs.requests import download_notice
from jobs.stats import ModelDownload

DISCORD_TIME_TAG = re.compile(r"<t:(\d+)(?::[tTdDfFR])?>")


def plain(message: str) -> str:
    """A user-facing message with Discord's time tags (``<t:1700000000:R>``) written as UTC times."""

    def when(match: re.Match[str]) -> str:
        return "at " + datetime.fromtimestamp(int(match.group(1)), UTC).strftime("%Y-%m-%d %H:%M UTC")

    return DISCORD_TIME_TAG.sub(when, message)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def job_json(
    job: Job,
    *,
    position: int | None = None,
    eta_seconds: float | None = None,
    downloads: Mapping[str, ModelDownload] | None = None,
) -> dict[str, Any]:
    """Everything the page shows about one of the user's jobs; a queued job whose model a worker is downloading
    (``downloads``, by model key) says how far that is instead of an estimate."""
    download = (downloads or {}).get(job.model) if job.status == JobStatus.QUEUED else None
    if download is not None:
        eta_seconds = None
    done = job.status == JobStatus.SUCCEEDED and job.withheld_at is None  # withheld: flagged unsafe, deleted
    name = output_filename(job.id, job.finished_at) if job.status == JobStatus.SUCCEEDED and job.finished_at else None
    return {
        "id": job.id,
        "status": job.status.value,
        "phase": job.phase.value,
        "step": job.progress_step,
        "total": job.progress_total,
        "position": position,
        "eta_seconds": None if eta_seconds is None else round(eta_seconds, 1),
        "model_download": download_notice(download) if download is not None else None,
        "pending": job.status in PENDING_STATUSES,
        "cancel_requested": job.cancel_requested,
        "error": plain(job.error) if job.error else None,
        "delivery_error": plain(job.delivery_error) if job.delivery_error else None,  # not posted in Discord
        "params": job.params.to_dict() | {"width": job.width, "height": job.height},
        "model_name": display_name(job.model),
        "source": job.source.value,
        "gpu_seconds": job.gpu_seconds,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
        "output_name": name,
        "video_url": f"/api/jobs/{job.id}/video.mp4" if done else None,
        "download_url": f"/api/jobs/{job.id}/video.mp4?download=1" if done else None,
        "input_url": f"/api/jobs/{job.id}/input" if job.input_released_at is None else None,
    }
