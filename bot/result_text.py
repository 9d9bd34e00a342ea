"""The text of a job's delivery messages and of its Info button: who asked, the prompt, every parameter, the time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.status import describe_params, neutralise_mentions, quote_prompt

if TYPE_CHECKING:
    from jobs.models import Job


def _elapsed(job: Job) -> str:
    parts = []
    if job.finished_at and job.created_at:
        parts.append(f"took {(job.finished_at - job.created_at).total_seconds():.1f} s")
    if job.gpu_seconds is not None:
        parts.append(f"GPU {job.gpu_seconds:.1f} s")
    return ", ".join(parts)


def render_result(job: Job) -> str:
    """The text posted with a finished video: who, the prompt and every parameter used, and the time taken."""
    took = _elapsed(job)
    return (
        f"🎬 <@{job.user_id}>, your video is ready (job #{job.id}{', ' + took if took else ''}).\n"
        f"{quote_prompt(job.prompt)}\n{describe_params(job)}"
    )


def render_notice(job: Job) -> str:
    """The text posted for a job that failed or was cancelled."""
    status = str(getattr(job.status, "value", job.status))
    if status == "failed":
        return (
            f"❌ <@{job.user_id}>, job #{job.id} failed: {job.error or 'unknown error'}\n"
            "Nothing was charged for it."
        )
    charged = f" You were charged {job.gpu_seconds:.1f} GPU-seconds." if job.gpu_seconds else ""
    return f"🛑 <@{job.user_id}>, job #{job.id} was cancelled.{charged}"


def render_info(job: Job) -> str:
    """Every detail of a job, for the Info button."""
    status = str(getattr(job.status, "value", job.status))
    lines = [
        f"**Job #{job.id}** ({status}) by <@{job.user_id}>, via {getattr(job.source, 'value', job.source)}",
        f"Prompt: {neutralise_mentions(job.prompt)}",
        f"Negative prompt: {neutralise_mentions(job.negative_prompt or '(none)')}",
        describe_params(job),
    ]
    if job.parent_job_id:
        lines.append(f"Made from job #{job.parent_job_id}")
    took = _elapsed(job)
    if took:
        lines.append(took.capitalize())
    if job.output_bytes:
        lines.append(f"File: {job.output_bytes / 1024:.0f} kB (upload limit {job.upload_limit_bytes / 1024:.0f} kB)")
    if job.error:
        lines.append(f"Error: {job.error}")
    return "\n".join(lines)
