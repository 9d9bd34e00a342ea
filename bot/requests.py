"""The one request flow of the Discord side, for every way to ask: ``/animate``, *Apps → Animate*, a mention,
Re-roll and Vary. Check, download, enqueue, tell the user; and cancel.

The steps shared with the web page live in ``jobs.requests``: decode and check the image off the event loop
(``check_upload``: real decode, bomb guard), then enqueue with the input image stored and the quota reserved in
one transaction (``enqueue_request``, over ``jobs.admission.enqueue_job``, which applies the server's caps, pauses,
bans and quotas). Any refusal rolls that transaction back, so a refused request leaves nothing behind and costs
nothing. The Discord side adds the image download from Discord's attachment hosts (byte cap, same-origin
redirects only), the status message in the channel and the ephemeral answer.

What holds a new job back (a pause, no worker) is read once per request, after the commit, and told both in the
status message and in the answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp
import discord

from bot.channel_access import check_can_post
from bot.errors import NoSuchJob, UserFacingError
from bot.image_origin import REDIRECT_MESSAGE, ImageOriginError, check_image_url, same_origin
from bot.permissions import check_job_access, no_such_job
from bot.render import queued_head, queued_text, reroll_head, vary_head
from bot.status import post_status_message
from generator.images import ImageError
from generator.params import Resolved, resolve_request
from jobs.control import allowed_models, pause_state
from jobs.errors import PromptBlocked
from jobs.queue import find_job, queue_position
from jobs.requests import (
    Origin,
    StoredInput,
    availability_notice,
    check_upload,
    download_notice,
    enqueue_request,
    input_byte_cap,
    stored_input_of,
    too_large,
    variant_of,
)
from jobs.safety import check_prompt, prompt_texts, record_blocked
from jobs.transitions import cancel_job
from jobs.workers import model_downloads

if TYPE_CHECKING:
    from bot.app import I2VBot
    from generator.params import GenerationParams
    from jobs.models import Job

log = logging.getLogger(__name__)

INVALID_WEBHOOK_TOKEN_CODE = 50027  # Discord: the interaction token expired (15 minutes)
UNKNOWN_WEBHOOK_CODE = 10015  # Discord: the webhook (interaction) is unknown
DOWNLOAD_CHUNK_BYTES = 64 * 1024  # read size while streaming an image download
MAX_REDIRECTS = 3  # same-origin redirects followed for one image download
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024  # Discord's default per-file limit, when the guild is unknown
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")

DOWNLOAD_FAILED_MESSAGE = "I could not download that image from Discord; upload it again and retry."
NO_IMAGE_MESSAGE = "That message has no image to animate (attach one, or use a message with an image embed)."
NO_PROXY_MESSAGE = (
    "That message's embedded image is not served through Discord's media proxy, and I only fetch images from "
    "Discord. Attach the picture itself and try again."
)
NO_PROMPT_MESSAGE = "Tell me what should move: @mention me with a prompt and an image."


# -- the image ----------------------------------------------------------------------------------------------------


def find_image(message: discord.Message) -> tuple[str, int | None] | None:
    """The first image in ``message``: an attachment (url, size) or an embed's image/thumbnail (its Discord
    media-proxy copy, ``proxy_url``, None).

    An embed's own ``url`` is whatever the embed's author wrote and is never used; an embed image without a proxy
    copy is refused (:data:`NO_PROXY_MESSAGE`). Where the URL points is checked again before any fetch.
    """
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").lower()
        if content_type.startswith("image/") or attachment.filename.lower().endswith(IMAGE_EXTENSIONS):
            return attachment.url, attachment.size
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            if media.proxy_url:
                return media.proxy_url, None
            if media.url:
                raise UserFacingError(NO_PROXY_MESSAGE)
    return None


def check_declared_type(content_type: str | None) -> None:
    """Refuse an attachment Discord says is not an image before downloading it."""
    if content_type and not content_type.lower().startswith("image/"):
        raise ImageError("not_image", f"(it is {content_type.split(';')[0]})")


def byte_cap(bot: I2VBot) -> int:
    """The largest input image accepted, in bytes: MAX_DOWNLOAD_BYTES, at most what the image decoder and the
    job store accept."""
    return input_byte_cap(bot.settings.max_download_bytes)


async def download_image(bot: I2VBot, url: str, *, declared_size: int | None = None) -> bytes:
    """Fetch ``url`` from Discord's attachment hosts only (``bot.image_origin``), following redirects only within
    its origin, and never hold more than the byte cap: refuse early on the declared, header or streamed size.

    A refusal says what was wrong; the HTTP status or error of a failed fetch goes to the log, not to the user.
    """
    cap = byte_cap(bot)
    if declared_size is not None and declared_size > cap:
        raise too_large(declared_size, cap)
    check_image_url(url, bot.settings.api_base)
    assert bot.web is not None
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with bot.web.get(url, allow_redirects=False) as response:
                if response.status in REDIRECT_STATUSES:
                    target = urljoin(url, response.headers.get("Location", ""))
                    if not same_origin(url, target):
                        log.warning("image %s redirected to another origin (%s); not followed", url, target)
                        raise ImageOriginError(REDIRECT_MESSAGE)
                    url = target
                    continue
                if response.status != 200:
                    log.warning("image download answered HTTP %s", response.status)
                    raise UserFacingError(DOWNLOAD_FAILED_MESSAGE)
                if response.content_length is not None and response.content_length > cap:
                    raise too_large(response.content_length, cap)
                buffer = bytearray()
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                    buffer += chunk
                    if len(buffer) > cap:
                        raise too_large(len(buffer), cap)
                return bytes(buffer)
        log.warning("image download redirected more than %d times; given up", MAX_REDIRECTS)
        raise UserFacingError(DOWNLOAD_FAILED_MESSAGE)
    except (TimeoutError, aiohttp.ClientError) as error:
        log.warning("image download failed: %r", error)
        raise UserFacingError("I could not download that image (the connection failed); try again.") from error


# -- the channel --------------------------------------------------------------------------------------------------


def check_interaction_channel(interaction: discord.Interaction) -> None:
    """Refuse (ephemerally, through the error funnel) a request made where the bot may not post its status and
    result: Discord resolved the bot's permissions in that channel (``app_permissions``) for this interaction."""
    check_can_post(interaction.channel, interaction.app_permissions)


def check_mention_channel(message: discord.Message) -> None:
    """Refuse a mention request made where the bot may not post its status and result (its permissions computed
    from the cached channel, roles and overwrites)."""
    guild = message.guild
    if guild is None or guild.me is None:
        return  # a DM: the bot can always answer there
    check_can_post(message.channel, message.channel.permissions_for(guild.me))


# -- the blocklists ----------------------------------------------------------------------------------------------


async def check_blocklists(
    bot: I2VBot, params: GenerationParams, *, user_id: int, guild_id: int | None, source: str
) -> None:
    """Refuse a prompt or negative prompt holding a term of the bot's or this server's blocklist, before anything
    is downloaded (``jobs.safety.check_prompt``; admission checks again when queueing). Raises ``PromptBlocked``,
    audited."""
    try:
        async with bot.readers() as session:
            await check_prompt(
                session,
                guild_id=guild_id,
                texts=prompt_texts(params.prompt, params.negative_prompt),
                setting_terms=bot.settings.prompt_blocklist,
            )
    except PromptBlocked as refused:
        await audit_blocked(bot, refused, user_id=user_id, guild_id=guild_id, source=source)
        raise


async def audit_blocked(
    bot: I2VBot, refused: PromptBlocked, *, user_id: int, guild_id: int | None, source: str
) -> None:
    """Record a blocked prompt for the audit log and ``/admin stats`` (its own transaction; never the prompt). A
    failure to record is logged: the refusal stands."""
    log.info("prompt of user %s in guild %s blocked by the %s list (%s)", user_id, guild_id, refused.scope, source)
    try:
        async with bot.sessions.begin() as session:
            await record_blocked(session, refused, user_id=user_id, guild_id=guild_id, source=source)
    except Exception:
        log.warning("could not audit the blocked prompt of user %s", user_id, exc_info=True)


# -- queueing -----------------------------------------------------------------------------------------------------


def interaction_origin(
    interaction: discord.Interaction,
    *,
    source: str,
    reply_to_message_id: int | None = None,
    parent_job_id: int | None = None,
    spoiler: bool = False,
) -> Origin:
    """The :class:`Origin` of a request made through an interaction (stores its token and upload limit)."""
    if interaction.channel_id is None:
        raise UserFacingError("I can only make videos in a channel.")
    return Origin(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        source=source,
        upload_limit_bytes=interaction.filesize_limit,
        reply_to_message_id=reply_to_message_id,
        interaction_token=interaction.token,
        interaction_expires_at=interaction.expires_at,
        application_id=interaction.application_id,
        parent_job_id=parent_job_id,
        spoiler=spoiler,
    )


async def hold_notice(bot: I2VBot, guild_id: int | None, model: str | None = None) -> str | None:
    """The sentences telling a requester what their job waits for: a worker (video generation is unavailable, or
    no live worker may load ``model``), the first download of ``model``, or a resume (a pause holds it); None when
    nothing holds it (or it cannot be read: the job is queued either way). Read once per request."""
    try:
        async with bot.readers() as session:
            state = await pause_state(session, guild_id)
            unavailable = await availability_notice(
                session,
                own_problem=getattr(bot.supervisor, "failure_reason", None),
                dead_after_s=bot.settings.worker_dead_after,
                model=model,
            )
            download = (await model_downloads(session, dead_after_s=bot.settings.worker_dead_after)).get(model or "")
    except Exception:
        log.warning("could not read the pause switches for guild %s", guild_id, exc_info=True)
        return None
    downloading = download_notice(download) if download is not None else None
    notices = [text for text in (unavailable, downloading, state.notice()) if text]
    return "\n".join(notices) or None


async def server_models(bot: I2VBot, guild_id: int | None) -> list[str]:
    """The enabled models (``I2V_MODELS``, in order) that the server ``guild_id`` allows, its default first; empty
    when its admins allow none of them."""
    async with bot.readers() as session:
        return await allowed_models(session, guild_id, bot.settings.models)


async def resolve_options(bot: I2VBot, guild_id: int | None, prompt: str, options: dict[str, Any]) -> Resolved:
    """The parameters of a request and the notes the user is told. Without a model option the model is the first
    enabled one (``I2V_MODELS``) that the server allows; a named model is checked against those at admission."""
    values = {k: v for k, v in options.items() if v is not None}
    if "model" not in values:
        values["model"] = (await server_models(bot, guild_id) or list(bot.settings.models))[0]
    return resolve_request(prompt, **values)


async def queue_job(
    bot: I2VBot,
    resolved: Resolved,
    *,
    stored: StoredInput,
    origin: Origin,
    requester: discord.Interaction | discord.Member | discord.User,
    size: tuple[int, int] | None = None,
) -> tuple[Job, str | None]:
    """Enqueue ``resolved`` through the shared request flow (image stored, quota reserved under the
    ``requester``'s policy, in one transaction), post the job's status message with its position, ETA, Cancel button
    and what holds it; return the job and that notice. ``resolved.notes`` (how the parameters were adjusted, e.g. a
    rounded frame count) lead the notice.

    ``size`` is the output (width, height); computed from the image when not given (re-rolls pass the parent's).
    Raises ``ParamError`` or a ``jobs.errors.RequestRefused`` subclass (``InputGone`` when a re-roll's image was
    deleted meanwhile); then nothing was written. Once the transaction committed, nothing after it may raise into
    the caller's "nothing was queued" error path: a status message that cannot be posted now is posted later by
    the monitor.
    """
    policy = bot.quota_policy(requester)
    try:
        async with bot.sessions.begin() as session:
            job = await enqueue_request(
                session, stored=stored, params=resolved.params, origin=origin, policy=policy, size=size
            )
    except PromptBlocked as refused:  # a list changed since the first check, or a re-roll/vary of a listed prompt
        await audit_blocked(bot, refused, user_id=origin.user_id, guild_id=origin.guild_id, source=origin.source)
        raise
    notice = "\n".join(filter(None, (*resolved.notes, await hold_notice(bot, job.guild_id, job.model)))) or None
    await announce_queued(bot, job, notice)
    return job, notice


async def announce_queued(bot: I2VBot, job: Job, notice: str | None) -> None:
    """Post ``job``'s status message (with ``notice``, if something holds it); never raises. On any failure
    (Discord or the database) the monitor is asked to post it on a later pass."""
    try:
        async with bot.readers() as session:
            place = await queue_position(session, job.id)
            downloading = job.model in await model_downloads(session, dead_after_s=bot.settings.worker_dead_after)
        eta_seconds = None if downloading else place.eta_seconds  # the download's progress instead of an estimate
        await post_status_message(bot, job, position=place.position, eta_seconds=eta_seconds, notice=notice)
    except Exception:
        log.warning(
            "could not post the status message of job %s; it stays queued, the monitor posts it later",
            job.id,
            exc_info=True,
        )
        if bot.monitor is not None:
            bot.monitor.post_later(job.id)


def _token_expired(error: discord.HTTPException) -> bool:
    """An interaction's webhook token that died (15 minutes) or is unknown: 401/50027 or 404/10015."""
    return (error.status, error.code) in ((401, INVALID_WEBHOOK_TOKEN_CODE), (404, UNKNOWN_WEBHOOK_CODE))


async def tell_queued(interaction: discord.Interaction, job: Job, text: str) -> None:
    """Send the ephemeral "queued" follow-up for a committed ``job``; never raises (the status message in the
    channel tells the same). An expired interaction token is expected (the request took long), not an error."""
    try:
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as error:
        if _token_expired(error):
            log.info("job %s is queued; its interaction token expired before the follow-up could say so", job.id)
        else:
            log.warning("job %s is queued; the follow-up saying so failed: %s", job.id, error)


# -- the entry points ---------------------------------------------------------------------------------------------


async def handle_request(
    bot: I2VBot,
    interaction: discord.Interaction,
    *,
    source: str,
    image_url: str,
    image_size: int | None,
    prompt: str,
    options: dict[str, Any],
    content_type: str | None = None,
    reply_to_message_id: int | None = None,
) -> None:
    """``/animate`` and the Animate form: acknowledge at once, then check the parameters, fetch and check the
    image, reserve quota and queue."""
    check_interaction_channel(interaction)
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
    options = dict(options)
    spoiler = bool(options.pop("spoiler", False))
    resolved = await resolve_options(bot, interaction.guild_id, prompt, options)
    await check_blocklists(
        bot, resolved.params, user_id=interaction.user.id, guild_id=interaction.guild_id, source=source
    )
    check_declared_type(content_type)
    data = await download_image(bot, image_url, declared_size=image_size)
    stored = await check_upload(data)
    origin = interaction_origin(interaction, source=source, reply_to_message_id=reply_to_message_id, spoiler=spoiler)
    job, notice = await queue_job(bot, resolved, stored=stored, origin=origin, requester=interaction)
    # committed: from here on the user is told it is queued, whatever else fails
    await tell_queued(interaction, job, queued_text(queued_head(job), notice))


async def _source_image(message: discord.Message) -> tuple[str, int | None]:
    """The image of a mention: in the message itself, else in the message it replies to."""
    image = find_image(message)
    if image is None and message.reference and message.reference.message_id:
        referenced = message.reference.resolved
        if not isinstance(referenced, discord.Message):
            referenced = await message.channel.fetch_message(message.reference.message_id)
        image = find_image(referenced)
    if image is None:
        raise UserFacingError(NO_IMAGE_MESSAGE)
    return image


async def handle_mention(bot: I2VBot, message: discord.Message, prompt: str, options: dict[str, Any]) -> Job:
    """A mention request (its text already parsed into ``prompt`` and ``options``): check, download, queue.
    Its status message, a reply to ``message``, tells the requester."""
    check_mention_channel(message)
    if not prompt:
        raise UserFacingError(NO_PROMPT_MESSAGE)
    guild = message.guild
    resolved = await resolve_options(bot, guild.id if guild else None, prompt, options)
    await check_blocklists(
        bot, resolved.params, user_id=message.author.id, guild_id=guild.id if guild else None, source="mention"
    )
    url, size = await _source_image(message)
    data = await download_image(bot, url, declared_size=size)
    stored = await check_upload(data)
    origin = Origin(
        user_id=message.author.id,
        guild_id=guild.id if guild else None,
        channel_id=message.channel.id,
        source="mention",
        upload_limit_bytes=guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT_BYTES,
        reply_to_message_id=message.id,
    )
    job, _ = await queue_job(bot, resolved, stored=stored, origin=origin, requester=message.author)
    return job


async def load_job(bot: I2VBot, job_id: int) -> Job:
    """Read job ``job_id`` or raise :class:`NoSuchJob`."""
    async with bot.readers() as session:
        job = await find_job(session, job_id)
    if job is None:
        raise NoSuchJob(no_such_job(job_id))
    return job


async def load_own_job(
    bot: I2VBot, interaction: discord.Interaction, job_id: int, action: str, *, server_admins: bool = False
) -> Job:
    """Job ``job_id``, if the interaction's user may ``action`` it (see :func:`bot.permissions.check_job_access`)."""
    job = await load_job(bot, job_id)
    check_job_access(interaction, bot.operators, job, action, server_admins=server_admins)
    return job


async def queue_variant(
    bot: I2VBot, interaction: discord.Interaction, parent: Job, *, source: str, changes: dict[str, Any]
) -> None:
    """Re-roll (``changes={"seed": None}``) or Vary: queue a new job from ``parent``'s input and parameters with
    ``changes`` applied (``seed: None`` = new seed) and answer. The status message replies to the message the
    button was on."""
    check_interaction_channel(interaction)
    resolved, size = variant_of(parent, changes)
    stored = stored_input_of(parent)
    origin = interaction_origin(
        interaction,
        source=source,
        reply_to_message_id=interaction.message.id if interaction.message else parent.result_message_id,
        parent_job_id=parent.id,
        spoiler=parent.spoiler,  # a variant of a spoilered result stays one
    )
    job, notice = await queue_job(bot, resolved, stored=stored, origin=origin, requester=interaction, size=size)
    head = reroll_head(parent, job) if source == "reroll" else vary_head(parent, job)
    await tell_queued(interaction, job, queued_text(head, notice))


async def cancel_job_for(bot: I2VBot, job: Job) -> str:
    """Cancel ``job``; return the sentence to show the user."""
    async with bot.sessions.begin() as session:
        outcome = await cancel_job(session, job.id)
    if bot.monitor is not None:
        bot.monitor.wake()
    log.info("cancel of job %s: %s", job.id, outcome.value)
    return outcome.sentence(job.id)
