"""The page's own API: make a video, follow it, cancel it, re-roll it, the quota, the gallery.

Every request acts as ``request[USER]`` (``web.auth``) and reaches only that user's jobs: another user's job is
answered as if it did not exist. Requests go through the same flow as Discord's (``jobs.requests``): the same
image checks, parameter checks, pause holds, bans, caps and quota, the same messages. A job made on the page
belongs to the server the user's sign-in link was made in (``/web`` there; none from a DM or the operator's link):
that server's bans, pause and caps apply to it exactly as to ``/animate`` there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from generator.images import ImageError
from generator.model_spaces import DEFAULT_PRESET, SPACES, union_bounds
from generator.params import (
    DEFAULT_NEGATIVE_PROMPT,
    MAX_PROMPT_CHARS,
    SEED_RANGE,
    ParamError,
    Resolved,
    resolve_request,
)
from jobs.blobs import DATABASE_BLOBS
from jobs.copies import remove_copies
from jobs.errors import PromptBlocked, RequestRefused
from jobs.listings import user_videos
from jobs.models import Job, JobSource, JobStatus
from jobs.queue import find_job
from jobs.quota import QuotaPolicy, quota_status
from jobs.requests import (
    Origin,
    StoredInput,
    availability_notice,
    check_upload,
    enqueue_request,
    stored_input_of,
    too_large,
    variant_of,
)
from jobs.retention import delete_job_video
from jobs.safety import Verdict, check_prompt, prompt_texts, record_blocked
from jobs.transitions import cancel_job
from jobs.web_sessions import LOCAL_OPERATOR_ID, find_session
from web.auth import SESSION_COOKIE, USER, WebUser, error
from web.context import PageContext
from web.events import job_state, stream_job
from web.limits import TOO_MANY, TOO_MANY_STREAMS, BadRequest, whole_number
from web.ranges import send_blob
from web.render import iso, job_json, plain

log = logging.getLogger(__name__)

WEB_CHANNEL_ID = 1  # web jobs have no Discord channel; NewJob needs a positive id and no snowflake is 1
WEB_UPLOAD_LIMIT_BYTES = 100 * 1024 * 1024  # the page has no upload limit of its own: the store's video cap
NOT_A_FORM = "Refused: send the form as multipart/form-data, as the page does."
NO_SUCH_JOB = '{"error": "There is no such job of yours."}'
FIELD_CAP_BYTES = 4096  # a text field of the form
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and the text fields, beyond the image itself
READ_CHUNK_BYTES = 64 * 1024
GALLERY_PAGE_SIZE = 6  # videos per gallery page
PARAM_FIELDS = (
    "prompt",
    "negative_prompt",
    "preset",
    "resolution",
    "frames",
    "fps",
    "steps",
    "guidance",
    "seed",
    "model",
    "parent",
)
AGAIN_MODES = {"reroll": {"seed": None}, "same": {}}


def _user(request: web.Request) -> WebUser:
    user = request[USER]
    assert user is not None  # the middleware refuses anonymous API calls
    return user


def policy_for(config: Any, user: WebUser) -> QuotaPolicy:
    """The quota rules for a web user, built as Discord builds them: the settings' defaults, the member's roles
    from the sign-in link selecting tiers, the operator's queue priority."""
    return QuotaPolicy.of_requester(config, role_ids=user.role_ids, is_admin=user.is_operator)


def refusal(exc: BaseException) -> web.Response:
    """The same sentence Discord would show, as a 400 (or 413 for a too-large image)."""
    status = 413 if isinstance(exc, ImageError) and exc.code == "too_large" else 400
    return error(status, plain(str(exc)))


async def _read_part(part: BodyPartReader, cap: int) -> bytes:
    buffer = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > cap:
            raise (
                too_large(len(buffer), cap)
                if part.name == "image"
                else ParamError(part.name or "field", "...", "shorter")
            )
    return bytes(buffer)


async def read_form(request: web.Request, cap: int) -> tuple[dict[str, str], bytes | None]:
    """The multipart form's text fields and image, refusing a body larger than the cap before reading it and an
    image larger than the cap while reading it."""
    declared = request.content_length
    if declared is not None and declared > cap + FORM_OVERHEAD_BYTES:
        raise too_large(declared, cap)
    if request.content_type != "multipart/form-data" or "boundary" not in request.headers.get("Content-Type", ""):
        raise BadRequest(NOT_A_FORM)
    fields: dict[str, str] = {}
    image: bytes | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "image":
                data = await _read_part(part, cap)
                image = data or None
            elif part.name in PARAM_FIELDS:
                fields[part.name] = (await _read_part(part, FIELD_CAP_BYTES)).decode("utf-8", "replace")
            else:
                await part.release()
    except (ValueError, aiohttp.ClientPayloadError) as exc:
        if isinstance(exc, (ImageError, ParamError)):
            raise
        raise BadRequest(NOT_A_FORM) from None
    return fields, image


def params_from(fields: dict[str, str], default_model: str) -> Resolved:
    """Resolve the form's values like Discord's options: the model's preset fills in, explicit values override it."""

    def given(name: str) -> str | None:
        value = fields.get(name, "").strip()
        return value or None

    return resolve_request(
        fields.get("prompt", ""),
        model=given("model") or default_model,
        preset=given("preset"),
        resolution=given("resolution"),
        frames=given("frames"),  # type: ignore[arg-type]  # strings are parsed and checked by generator.params
        fps=given("fps"),  # type: ignore[arg-type]  # a string, as frames above
        steps=given("steps"),  # type: ignore[arg-type]  # a string, as frames above
        guidance=given("guidance"),  # type: ignore[arg-type]  # a string, as frames above
        seed=given("seed"),  # type: ignore[arg-type]  # a string, as frames above
        negative_prompt=fields.get("negative_prompt"),
    )


def model_json(key: str) -> dict[str, Any]:
    """One model's space as the page's form uses it."""
    each = SPACES[key]
    return {
        "key": key,
        "name": each.display_name,
        "resolutions": list(each.resolutions),
        "frames": [each.frames.minimum, each.frames.maximum],
        "frames_step": each.frames.step,
        "frames_offset": each.frames.offset,
        "fps": each.fps_range,
        "steps": each.steps_range,
        "guidance": each.guidance_range,
        "negative_prompt_applies": each.negative_prompt_applies,
        "presets": {
            name: {
                "resolution": p.resolution,
                "frames": p.frames,
                "fps": p.fps,
                "steps": p.steps,
                "guidance": p.guidance,
            }
            for name, p in each.presets.items()
        },
    }


class Pages:
    """The handlers of the page's API, over the server's :class:`~web.context.PageContext`."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.config = ctx.config

    def origin(self, user: WebUser, parent: int | None = None) -> Origin:
        # the server the sign-in link was made in: its bans, pauses and caps apply as to /animate there
        return Origin(
            user_id=user.user_id,
            guild_id=user.guild_id,
            channel_id=WEB_CHANNEL_ID,
            source=JobSource.WEB.value,
            upload_limit_bytes=WEB_UPLOAD_LIMIT_BYTES,
            parent_job_id=parent,
        )

    async def own_job(self, user: WebUser, job_id: int) -> Job | None:
        async with self.ctx.readers() as session:
            job = await find_job(session, job_id)
        return job if job is not None and job.user_id == user.user_id else None

    async def job_or_404(self, request: web.Request) -> Job:
        job_id = whole_number(request.match_info["job_id"], "the job id")  # 400 beyond the database's integers
        job = await self.own_job(_user(request), job_id)
        if job is None:
            raise web.HTTPNotFound(text=NO_SUCH_JOB, content_type="application/json")
        return job

    # -- reading ----------------------------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        user = _user(request)
        return web.json_response(
            {
                "signed_in": True,
                "user_id": str(user.user_id),
                "operator": user.is_operator,
                "name": "this machine's operator"
                if user.user_id == LOCAL_OPERATOR_ID
                else f"Discord user {user.user_id}" + (" (operator)" if user.is_operator else ""),
                "csrf_token": user.csrf_token,
            }
        )

    async def options(self, request: web.Request) -> web.Response:
        """The enabled models with their ranges and presets (generator.model_spaces), the default model first, and
        the union of their ranges (the page draws its form from these)."""
        models = self.config.models
        bounds = union_bounds(models)
        return web.json_response(
            {
                "models": [model_json(key) for key in models],
                "default_model": models[0],
                "resolutions": list(bounds.resolutions),
                "frames": bounds.frames,
                "fps": bounds.fps,
                "steps": bounds.steps,
                "guidance": bounds.guidance,
                "seed": SEED_RANGE,
                "max_prompt_chars": MAX_PROMPT_CHARS,
                "default_preset": DEFAULT_PRESET,
                "default_negative_prompt": DEFAULT_NEGATIVE_PROMPT,
                "presets": model_json(models[0])["presets"],
                "max_upload_bytes": self.config.upload_cap_bytes,
            }
        )

    async def quota(self, request: web.Request) -> web.Response:
        user = _user(request)
        async with self.ctx.readers() as session:
            status = await quota_status(session, user.user_id, policy_for(self.config, user))
        return web.json_response(
            {
                "budget": status.budget,
                "used": status.used,
                "reserved": status.reserved,
                "remaining": status.remaining,
                "refill_at": iso(status.refill_at),
                "pending": status.pending,
                "max_pending": status.max_pending,
                "banned": status.banned,
            }
        )

    async def job(self, request: web.Request) -> web.Response:
        job = await self.job_or_404(request)
        state = await job_state(self.ctx.readers, job.id, dead_after_s=self.config.worker_dead_after)
        if state is None:  # deleted since job_or_404 read it
            raise web.HTTPNotFound(text=NO_SUCH_JOB, content_type="application/json")
        return web.json_response(state)

    async def events(self, request: web.Request) -> web.StreamResponse:
        user = _user(request)
        job = await self.job_or_404(request)
        with self.ctx.limits.streams.hold(user.user_id) as held:
            if not held:
                log.info(
                    "user %s already holds %d event streams; refused another",
                    user.user_id,
                    self.ctx.limits.streams.per_user,
                )
                return error(429, TOO_MANY_STREAMS)
            token = request.cookies.get(SESSION_COOKIE, "")

            async def signed_in() -> bool:
                async with self.ctx.readers() as session:
                    return await find_session(session, token) is not None

            return await stream_job(
                request, self.ctx.readers, job.id, signed_in=signed_in, dead_after_s=self.config.worker_dead_after
            )

    async def video(self, request: web.Request) -> web.StreamResponse:
        job = await self.job_or_404(request)
        readers = self.ctx.readers
        async with readers() as session:
            shown = job.status == JobStatus.SUCCEEDED and job.output_verdict != Verdict.UNSAFE.value  # never unsafe
            size = await DATABASE_BLOBS.video_size(session, job.id) if shown else None
        if size is None:
            return error(404, "This video is no longer kept.")

        async def read(start: int, length: int) -> bytes | None:
            async with readers() as session:
                return await DATABASE_BLOBS.read_video_range(session, job.id, start, length)

        headers = {"Cache-Control": "private, max-age=3600"}
        if request.query.get("download"):
            name = job_json(job)["output_name"]
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return await send_blob(request, size=size, read=read, content_type="video/mp4", headers=headers)

    async def input_image(self, request: web.Request) -> web.StreamResponse:
        job = await self.job_or_404(request)
        readers, sha256 = self.ctx.readers, job.input_sha256
        async with readers() as session:
            size = await DATABASE_BLOBS.input_size(session, sha256) if job.input_released_at is None else None
        if size is None:
            return error(404, "This image is no longer kept.")

        async def read(start: int, length: int) -> bytes | None:
            async with readers() as session:
                return await DATABASE_BLOBS.read_input_range(session, sha256, start, length)

        return await send_blob(
            request,
            size=size,
            read=read,
            content_type="application/octet-stream",
            headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    async def gallery(self, request: web.Request) -> web.Response:
        user = _user(request)
        try:
            page = max(0, int(request.query.get("page", "0")))
        except ValueError:
            page = 0
        async with self.ctx.readers() as session:
            found = await user_videos(session, user.user_id, offset=page * GALLERY_PAGE_SIZE, limit=GALLERY_PAGE_SIZE)
        pages = max(1, -(-found.total // GALLERY_PAGE_SIZE))
        return web.json_response(
            {"page": page, "pages": pages, "total": found.total, "videos": [job_json(job) for job in found.jobs]}
        )

    # -- changing ---------------------------------------------------------------------------------------------

    async def check(self, request: web.Request) -> web.Response:
        """POST /api/images/check: the image checks' verdict on a picked image, before Generate."""
        if not self.ctx.limits.checks.allow(_user(request).user_id):
            return error(429, TOO_MANY)
        try:
            _, image = await read_form(request, self.config.upload_cap_bytes)
            if image is None:
                raise ImageError("empty")
            stored = await check_upload(image)
        except (ImageError, ParamError) as exc:
            log.info("web image check refused: %s", exc)
            return refusal(exc)
        return web.json_response({"ok": True, "width": stored.width, "height": stored.height})

    async def create(self, request: web.Request) -> web.Response:
        """POST /api/jobs: a new job from an uploaded image, or from one of the user's jobs (``parent``, Vary)."""
        user = _user(request)
        if not self.ctx.limits.creates.allow(user.user_id):
            return error(429, TOO_MANY)
        try:
            fields, image = await read_form(request, self.config.upload_cap_bytes)
            resolved = params_from(fields, self.config.models[0])
            params = resolved.params
            async with self.ctx.readers() as session:  # before the image is decoded or stored
                await check_prompt(
                    session,
                    guild_id=user.guild_id,
                    texts=prompt_texts(params.prompt, params.negative_prompt),
                    setting_terms=self.config.prompt_blocklist,
                )
            parent_id = fields.get("parent", "").strip()
            size = None
            if image is not None:
                stored: StoredInput = await check_upload(image)
                parent = None
            elif parent_id and (parent := await self.own_job(user, whole_number(parent_id, "parent"))) is not None:
                stored = stored_input_of(parent)
                size = variant_of(parent, {"resolution": params.resolution, "model": params.model})[1]
            else:
                raise ImageError("empty", "(choose a picture first)")
            async with self.ctx.sessions.begin() as session:
                job = await enqueue_request(
                    session,
                    stored=stored,
                    params=params,
                    origin=self.origin(user, parent.id if parent else None),
                    policy=policy_for(self.config, user),
                    size=size,
                )
        except (ImageError, ParamError, RequestRefused) as exc:
            log.info("web request of user %s refused: %s", user.user_id, exc)
            return await self._refused(user, exc)
        return await self._queued(job, resolved.notes)

    async def again(self, request: web.Request) -> web.Response:
        """POST /api/jobs/{id}/again?mode=reroll|same: Re-roll (a new seed) or Same again (the same seed)."""
        user = _user(request)
        parent = await self.job_or_404(request)
        changes = AGAIN_MODES.get(request.query.get("mode", ""))
        if changes is None:
            return error(400, "mode must be reroll or same")
        if not self.ctx.limits.creates.allow(user.user_id):
            return error(429, TOO_MANY)
        try:
            resolved, size = variant_of(parent, changes)
            async with self.ctx.sessions.begin() as session:
                job = await enqueue_request(
                    session,
                    stored=stored_input_of(parent),
                    params=resolved.params,
                    origin=self.origin(user, parent.id),
                    policy=policy_for(self.config, user),
                    size=size,
                )
        except (ParamError, RequestRefused) as exc:
            return await self._refused(user, exc)
        log.info("job %s is the web %s of job %s", job.id, request.query["mode"], parent.id)
        return await self._queued(job)

    async def _refused(self, user: WebUser, exc: BaseException) -> web.Response:
        """The refusal's answer; a blocked prompt is audited first (its own transaction: the request's was
        rolled back)."""
        if isinstance(exc, PromptBlocked):
            async with self.ctx.sessions.begin() as session:
                await record_blocked(
                    session, exc, user_id=user.user_id, guild_id=user.guild_id, source=JobSource.WEB.value
                )
        return refusal(exc)

    async def _queued(self, job: Job, notes: tuple[str, ...] = ()) -> web.Response:
        """201 with the job; ``notice`` says how the parameters were adjusted (a rounded frame count) and when video
        generation is unavailable (the job stays queued)."""
        body = await job_state(self.ctx.readers, job.id, dead_after_s=self.config.worker_dead_after) or job_json(job)
        async with self.ctx.readers() as session:
            notice = await availability_notice(
                session,
                own_problem=self.ctx.facts.worker_problem(),
                dead_after_s=self.config.worker_dead_after,
                model=job.model,
            )
        return web.json_response({**body, "notice": " ".join(filter(None, (*notes, notice))) or None}, status=201)

    async def cancel(self, request: web.Request) -> web.Response:
        job = await self.job_or_404(request)
        async with self.ctx.sessions.begin() as session:
            outcome = await cancel_job(session, job.id)
        log.info("web cancel of job %s by its owner: %s", job.id, outcome.value)
        return web.json_response({"outcome": outcome.value, "message": outcome.sentence(job.id)})

    async def delete(self, request: web.Request) -> web.Response:
        job = await self.job_or_404(request)
        async with self.ctx.sessions.begin() as session:
            await delete_job_video(session, job.id)
        await asyncio.to_thread(remove_copies, self.ctx.config.output_dir, [job.id])
        log.info("web delete of job %s's video by its owner", job.id)
        return web.json_response({"deleted": job.id})
