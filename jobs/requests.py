"""One request flow for every front end (Discord's commands and buttons, the web page): check the image, then
enqueue the job with its image stored and its quota reserved. Imports neither discord nor torch.

``check_image`` decodes the bytes for real (``generator.images.load_image``: format, truncation, bomb guard, size
and aspect checks) and names them by SHA-256 (``check_upload`` runs it off the event loop); ``enqueue_request`` sizes
the output from the image and the parameters (``generator.params``) and calls ``jobs.admission.enqueue_job`` in the
caller's transaction, which applies the pause switches, bans, the pending cap, the queue cap and the 24-hour budget.
Every refusal is an exception whose ``str()`` is the message shown to the user (``ImageError``, ``ParamError``,
``RequestRefused``); the caller rolls its transaction back, so a refused request writes nothing.

While no worker can start, a request is still queued (it runs once a fixed worker is back, as after a pause) and
``availability_notice`` gives the sentence every front end adds to its "queued" answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from generator.images import MAX_INPUT_BYTES, ImageError, load_image
from generator.model_spaces import MODEL_KEYS, SPACES, display_name
from generator.params import GenerationParams, Resolved, resolve_request, target_size
from jobs.blobs import MAX_INPUT_BLOB_BYTES
from jobs.errors import InputGone
from jobs.models import JobSource
from jobs.stats import ModelDownload
from jobs.workers import generation_unavailable, loadable_by_live_workers

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from jobs.models import Job
    from jobs.quota import QuotaPolicy

log = logging.getLogger(__name__)


UNAVAILABLE_NOTICE = (
    "⚠️ Video generation is unavailable right now: {reason}. This job stays queued and starts when a worker is back."
)
MODEL_UNAVAILABLE_NOTICE = (
    "⚠️ No worker can run {model} right now (the workers running load {loadable}). This job "
    "stays queued and starts when a worker that can run it is back."
)

DOWNLOAD_NOTICE = (
    "⬇️ The {model} model is downloading for its first use: {progress}. This job starts once it has loaded."
)


def download_notice(download: ModelDownload) -> str:
    """What a queued job of a model that a worker is downloading says instead of an estimate."""
    return DOWNLOAD_NOTICE.format(model=display_name(download.model), progress=download.text())


async def availability_notice(
    session: AsyncSession, *, own_problem: str | None, dead_after_s: float, model: str | None = None
) -> str | None:
    """The "unavailable right now" sentence for a requester, or None while a worker is alive (that may load
    ``model``, when given). ``own_problem`` is why this process's embedded worker cannot start (its supervisor's
    reason); it wins over the registry."""
    reason = own_problem or await generation_unavailable(session, dead_after_s=dead_after_s)
    if reason:
        return UNAVAILABLE_NOTICE.format(reason=reason.rstrip("."))
    if model is None:
        return None
    loadable = await loadable_by_live_workers(session, dead_after_s=dead_after_s)
    if loadable is None or model in loadable:
        return None
    names = ", ".join(display_name(key) for key in MODEL_KEYS if key in loadable)
    return MODEL_UNAVAILABLE_NOTICE.format(model=display_name(model), loadable=names)


@dataclass(frozen=True, kw_only=True)
class Origin:
    """Where a request came from and where its status and result go (the Discord fields stay None for the
    web page, whose jobs have source ``web``)."""

    user_id: int
    guild_id: int | None
    channel_id: int
    source: str  # a jobs.models.JobSource value
    upload_limit_bytes: int
    reply_to_message_id: int | None = None
    interaction_token: str | None = None
    interaction_expires_at: datetime | None = None
    application_id: int | None = None
    parent_job_id: int | None = None
    spoiler: bool = False  # post the result as a spoiler (the SPOILER_ file name)


@dataclass(frozen=True)
class StoredInput:
    """An input image that passed every check, named by its content hash; ``data`` is None for the image of an
    existing job (re-roll, vary), which the store already keeps."""

    data: bytes | None
    sha256: str
    width: int
    height: int


def input_byte_cap(max_download_bytes: int) -> int:
    """The largest input image accepted, in bytes: the configured cap, at most what the image decoder and the
    job store accept."""
    return min(max_download_bytes, MAX_INPUT_BYTES, MAX_INPUT_BLOB_BYTES)


def too_large(size: int, cap: int) -> ImageError:
    """The refusal of an image of ``size`` bytes over ``cap``."""
    return ImageError("too_large", f"({size:,} bytes; the limit is {cap:,})")


def check_image(data: bytes) -> StoredInput:
    """Decode ``data`` (raises ImageError with the user-facing message) and name it by its SHA-256. CPU work:
    call it in a worker thread from the event loop."""
    image = load_image(data)
    width, height = image.size
    image.close()
    return StoredInput(data=data, sha256=hashlib.sha256(data).hexdigest(), width=width, height=height)


async def check_upload(data: bytes) -> StoredInput:
    """``check_image`` in a worker thread, so a large image never stalls the event loop (an upload to the page,
    an attachment downloaded from Discord)."""
    return await asyncio.to_thread(check_image, data)


def stored_input_of(job: Job) -> StoredInput:
    """The input of an existing job (re-roll, vary, same again); ``InputGone`` when it is no longer kept."""
    if job.input_released_at is not None:
        raise InputGone(job.id)
    return StoredInput(data=None, sha256=job.input_sha256, width=0, height=0)


def variant_of(parent: Job, changes: Mapping[str, Any]) -> tuple[Resolved, tuple[int, int]]:
    """The parameters (with the notes the user is told) and output size of a new job from ``parent`` with
    ``changes`` applied: ``seed: None`` is a new random seed; ``prompt`` and ``model`` may change too. A changed
    model starts from its own preset (the parent's, or standard) for every value not given, since the parent's
    values are usually outside the other model's space. A changed resolution or model keeps the parent's aspect
    ratio."""
    base = parent.params
    rest = dict(changes)
    model = rest.pop("model", None) or base.model
    prompt = rest.pop("prompt", base.prompt)
    if model == base.model:
        values: dict[str, Any] = base.to_dict()
        del values["prompt"], values["model"]
        resolved = resolve_request(prompt, model=model, **(values | rest))
    else:
        keep = {"seed": base.seed, "preset": base.preset}
        if SPACES[model].negative_prompt_applies and base.negative_prompt.strip():
            keep["negative_prompt"] = base.negative_prompt  # the user's own words carry over where they apply
        resolved = resolve_request(prompt, model=model, **(keep | rest))
    params = resolved.params
    if params.model == base.model and params.resolution == base.resolution:
        return resolved, (parent.width, parent.height)
    return resolved, target_size(params.resolution, parent.width, parent.height, params.model)


async def enqueue_request(
    session: AsyncSession,
    *,
    stored: StoredInput,
    params: GenerationParams,
    origin: Origin,
    policy: QuotaPolicy,
    size: tuple[int, int] | None = None,
) -> Job:
    """Enqueue the job with its image stored and its quota reserved, in the caller's transaction.

    ``size`` is the output (width, height); computed from the image when not given (re-rolls pass the parent's).
    Raises ``ParamError`` or a ``jobs.errors.RequestRefused`` subclass; then roll back, nothing was written.
    """
    from jobs.admission import NewJob, enqueue_job

    if size is None:
        size = target_size(params.resolution, stored.width, stored.height, params.model)
    width, height = size
    new = NewJob(
        user_id=origin.user_id,
        guild_id=origin.guild_id,
        channel_id=origin.channel_id,
        source=JobSource(origin.source),
        params=params,
        width=width,
        height=height,
        input_sha256=stored.sha256,
        reply_to_message_id=origin.reply_to_message_id,
        interaction_token=origin.interaction_token,
        interaction_expires_at=origin.interaction_expires_at,
        application_id=origin.application_id,
        upload_limit_bytes=origin.upload_limit_bytes,
        parent_job_id=origin.parent_job_id,
        spoiler=origin.spoiler,
    )
    job = await enqueue_job(session, new, policy, image=stored.data)
    log.info("job %s queued for user %s (%s, %s)", job.id, origin.user_id, origin.source, params.describe())
    return job
