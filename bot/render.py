"""Every text the bot shows its members in Discord: status messages, results and notices, the Info details, what a
request is told, /help, /queue, /quota and /web answers. The admin and operator texts are ``bot.admin_render``.

Pure functions of what the store returned (no I/O). Everything they render goes out with no pings allowed unless
the caller says so (the client's default), so a user id shown as ``<@id>`` only names the member. Sentences the
web page shows too (the cancel outcome, a pause or an unavailable worker) live in ``jobs`` (``web`` cannot import
``bot``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord

from generator.model_spaces import display_name
from jobs.models import TERMINAL_STATUSES, JobStatus
from jobs.safety import Verdict

if TYPE_CHECKING:
    from generator.model_spaces import Preset
    from jobs.models import Job
    from jobs.quota import QuotaStatus
    from jobs.retention import UserDataDeleted

MENTION_PATTERN = re.compile(r"<@([!&]?)(\d+)>")
PROGRESS_BAR_CELLS = 20  # characters in the text progress bar
BAR_FULL = "█"
BAR_EMPTY = "░"
PHASE_LABELS = {
    "queued": "Waiting in the queue",
    "loading": "Loading the model",
    "preparing": "Preparing the image",
    "denoising": "Denoising",
    "decoding": "Decoding frames",
    "encoding": "Encoding the MP4",
    "done": "Finishing",
}
PROMPT_PREVIEW_CHARS = 40  # characters of a prompt shown in the admin queue listing
MY_QUEUE_PREVIEW_CHARS = 60  # characters of a prompt shown in /queue
DETAIL_PREVIEW_CHARS = 120  # characters of an audit row's detail shown in the log
EMBED_COLOUR = discord.Colour.dark_teal()
EMBED_FIELD_CHARS = 1024  # Discord's limit on an embed field's value


def preview(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- a job's status message ---------------------------------------------------------------------------------------


def progress_bar(done: int, total: int, cells: int = PROGRESS_BAR_CELLS) -> str:
    """``█████░░░░░ 50%`` for ``done`` of ``total`` (clamped)."""
    if total <= 0:
        return BAR_EMPTY * cells + "   0%"
    fraction = min(1.0, max(0.0, done / total))
    filled = math.floor(fraction * cells)
    return f"{BAR_FULL * filled}{BAR_EMPTY * (cells - filled)} {round(fraction * 100):3d}%"


def describe_params(job: Job) -> str:
    """One line of the parameters used: model, preset, size, frames, fps, steps, guidance, seed."""
    preset = job.preset or "custom"
    return (
        f"{display_name(job.model)} · preset {preset} · {job.resolution} ({job.width}×{job.height}) · "
        f"{job.frames} frames @ {job.fps} fps · {job.steps} steps · guidance {job.guidance:g} · seed {job.seed}"
    )


def neutralise_mentions(text: str) -> str:
    """``text`` with user, role and @everyone/@here mentions broken by a zero-width space (shown, never pinging)."""
    return MENTION_PATTERN.sub("<@\u200b\\1\\2>", discord.utils.escape_mentions(text))


def quote_prompt(prompt: str) -> str:
    """The prompt as a Discord quote, with mentions neutralised."""
    text = neutralise_mentions(prompt.strip()) or "(no prompt)"
    return "\n".join("> " + line for line in text.splitlines())


def is_final(job: Job) -> bool:
    """True once the job can no longer change (its status message loses the Cancel button)."""
    return job.status in TERMINAL_STATUSES


def render_status(
    job: Job,
    *,
    position: int | None = None,
    eta_seconds: float | None = None,
    now: datetime | None = None,
    notice: str | None = None,
) -> str:
    """The status message text for a queued or running job (pure: depends only on its arguments). ``notice``: what
    holds a queued job (an unavailable worker, a pause) or that the worker is back, on lines of its own."""
    now = now or datetime.now(UTC)
    status = job.status.value
    head = f"**Job #{job.id}** for <@{job.user_id}>\n{quote_prompt(job.prompt)}\n{describe_params(job)}"
    if status == "queued":
        if position is None:
            line = "⏳ Queued."
        else:
            line = f"⏳ Queued: position **{position}**"
            if eta_seconds is not None:
                start = int(now.timestamp() + eta_seconds)
                line += f", video expected <t:{start}:R>"
            line += "."
        if (job.attempt or 0) > 0:
            line += f" (retry {job.attempt + 1}: the previous attempt was interrupted)"
        return f"{head}\n{line}" + (f"\n{notice}" if notice else "")
    if status == "running":
        phase = job.phase.value
        label = PHASE_LABELS.get(phase, phase.capitalize())
        if job.cancel_requested:
            return f"{head}\n🛑 Cancelling…"
        if phase == "denoising" and job.progress_total:
            step = job.progress_step or 0
            return f"{head}\n⚙️ {label}: step {step}/{job.progress_total}\n`{progress_bar(step, job.progress_total)}`"
        return f"{head}\n⚙️ {label}…"
    if status == "succeeded":
        if job.withheld_at is not None or job.delivery_error:  # the reason goes to the requester privately
            return f"{head}\n✅ Done, but the video was not posted here; its requester was told why."
        return f"{head}\n✅ Done."
    if status == "failed" and job.input_verdict == Verdict.UNSAFE.value:  # the reason goes privately
        return f"{head}\n❌ Not made; its requester was told why. Nothing was charged."
    if status == "failed":
        return f"{head}\n❌ Failed: {job.error or 'unknown error'}"
    if status == "cancelled":
        return f"{head}\n🛑 Cancelled."
    return f"{head}\n{status}"


def status_key(job: Job, position: int | None, notice: str | None = None) -> tuple[object, ...]:
    """What a status message shows, without the clock: the message is edited only when this changes (an ETA
    that drifts by a second each poll is not a change)."""
    return (
        job.status,
        position,
        job.phase,
        job.progress_step,
        job.progress_total,
        job.cancel_requested,
        job.attempt,
        job.error,
        notice,
    )


AVAILABLE_AGAIN = "✅ Video generation is available again: this job starts in its turn."
"""Shown on a queued job's status message once the worker it was told was unavailable is back."""


# -- presets and /help ---------------------------------------------------------------------------------------------

PRESET_TRAITS = {"quick": "fastest", "high": "finest, slowest"}  # what a preset's choice name says beside it


def preset_traits(name: str, *, default: str) -> str:
    """What a preset is for, e.g. ``fastest`` or ``default`` ("" for none): its values differ per model and are in
    /help (:func:`render_presets`)."""
    return ", ".join(trait for trait in (PRESET_TRAITS.get(name), "default" if name == default else None) if trait)


def preset_choice_name(name: str, *, default: str) -> str:
    """A preset's choice in /animate: its name and what it is for, e.g. ``standard (default)``."""
    traits = preset_traits(name, default=default)
    return f"{name} ({traits})" if traits else name


def preset_shape(preset: Preset) -> str:
    """What a preset makes, e.g. ``720p, 81 frames at 24 fps (3.4 s)``."""
    return f"{preset.resolution}, {preset.frames} frames at {preset.fps} fps ({preset.frames / preset.fps:.1f} s)"


def model_choice_description(preset: Preset, *, server_default: bool) -> str:
    """A model's option in the Animate form: its standard preset (``preset``) in a few words, e.g. ``server
    default; standard: 720p, 81 frames at 24 fps (3.4 s)``."""
    return f"{'server default; ' if server_default else ''}{preset.name}: {preset_shape(preset)}"


def render_presets(models: Sequence[tuple[str, Mapping[str, Preset]]], default: str) -> str:
    """One line per preset with its values, the default marked (the /help field); ``models`` is each served
    model's name and presets, named only when there are several."""
    lines = []
    for model, presets in models:
        if len(models) > 1:
            lines.append(f"__{model}__")
        for name, preset in presets.items():
            mark = " (default)" if name == default else ""
            lines.append(
                f"**{name}**{mark}: {preset_shape(preset)}, {preset.steps} steps, guidance {preset.guidance:g}"
            )
    lines.append("Any option you give /animate overrides its preset's value.")
    return "\n".join(lines)


def render_help(
    commands: Sequence[tuple[str, str]],
    groups: Sequence[tuple[str, str, Sequence[str]]],
    presets: Sequence[tuple[str, Mapping[str, Preset]]],
    default_preset: str,
    quota: QuotaStatus,
    *,
    page_url: str | None,
    mentions: bool,
) -> discord.Embed:
    """The /help answer: what the bot does, the commands this user may run (``commands``: name and description;
    ``groups``: name, description and the subcommands they may run), each model's presets (``presets``: model name
    and presets), their quota, and the
    page's address when it has a public one."""
    ways = "`/animate` with an image and a prompt, or **Apps → Animate** on a message with an image"
    if mentions:
        ways += ", or mention me with a prompt in a message (or a reply) with an image"
    lines = [
        "I turn a still image into a short video clip (MP4): you say what should move, and a GPU animates it. "
        f"Ask with {ways}. Progress shows in the channel, and the video replaces it there when it is ready.",
        "",
        "**Your commands**",
    ]
    lines += [f"`/{name}`: {description}" for name, description in commands]
    lines += [
        f"`/{name}` ({description}): " + ", ".join(f"`{sub}`" for sub in subs) for name, description, subs in groups
    ]
    embed = discord.Embed(title="Image to video: help", description="\n".join(lines), colour=EMBED_COLOUR)
    embed.add_field(name="Presets", value=render_presets(presets, default_preset)[:EMBED_FIELD_CHARS], inline=False)
    embed.add_field(name="Your quota", value=render_quota(quota)[:EMBED_FIELD_CHARS], inline=False)
    if page_url:
        embed.add_field(name="Web page", value=f"{page_url} (sign in with `/web`)", inline=False)
    return embed


CHOICE_NAME_CHARS = 100  # Discord's limit on an autocomplete choice's name


def job_choice_name(job_id: int, status: str, prompt: str) -> str:
    """A job as an autocomplete choice: ``#12 queued: the waves roll in…`` (at most 100 characters)."""
    head = f"#{job_id} {status}: "
    return head + preview(prompt, CHOICE_NAME_CHARS - len(head))


# -- what a request is told ---------------------------------------------------------------------------------------


def queued_text(head: str, notice: str | None) -> str:
    """The ephemeral "queued" answer: ``head`` plus where progress shows, or the notice of what holds the job."""
    if notice:
        return f"{head} {notice}"
    return f"{head}; progress is in the channel, and the video will be posted there."


def queued_head(job: Job) -> str:
    """The first words of the answer to /animate, the Animate form and a mention."""
    return f"Queued as job #{job.id} (seed {job.seed})"


def reroll_head(parent: Job, job: Job) -> str:
    """The first words of the answer to a Re-roll."""
    return f"Re-rolling job #{parent.id} as job #{job.id} (seed {job.seed})"


def vary_head(parent: Job, job: Job) -> str:
    """The first words of the answer to a Vary form."""
    return f"Queued a variation of job #{parent.id} as job #{job.id}"


def missing_permissions_text(missing: list[str]) -> str:
    """The refusal of a request in a channel where the bot may not post its status and result."""
    names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
    noun = "permission" if len(missing) == 1 else "permissions"
    return (
        f"I can't post videos in this channel: I'm missing the {names} {noun} here. Ask a server admin to "
        "grant them to my role, or use another channel; nothing was queued."
    )


# -- results, notices and details ---------------------------------------------------------------------------------


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
    """The text posted for a job that failed or was cancelled, or whose video the safety check kept out of the
    channel (no reason given in public: its requester is told privately)."""
    status = job.status.value
    if status == "succeeded" and job.withheld_at is not None:  # the reason goes privately
        return f"🔒 <@{job.user_id}>, the video of job #{job.id} was made but not posted here; you were told why."
    if status == "failed" and job.input_verdict == Verdict.UNSAFE.value:  # the reason goes privately
        return f"❌ <@{job.user_id}>, job #{job.id} was not made; you were told why. Nothing was charged for it."
    if status == "failed":
        return f"❌ <@{job.user_id}>, job #{job.id} failed: {job.error or 'unknown error'}\nNothing was charged for it."
    charged = f" You were charged {job.gpu_seconds:.1f} GPU-seconds." if job.gpu_seconds else ""
    return f"🛑 <@{job.user_id}>, job #{job.id} was cancelled.{charged}"


def render_withheld(job: Job, reason: str) -> str:
    """What the requester is told privately about their video that the safety check kept out of the channel."""
    return f"⚠️ Your video of job #{job.id} was not posted. {reason}"


def render_input_refused(job: Job) -> str:
    """What the requester is told privately when the safety check refused their input image."""
    return f"⚠️ Your image for job #{job.id} was refused: {job.error or 'the safety check flagged it.'}"


def render_upload_failed(job: Job, reason: str, *, kept: bool) -> str:
    """The notice for a video that was made but could not be posted."""
    text = f"⚠️ <@{job.user_id}>, the video of job #{job.id} was made but could not be posted: {reason}"
    if kept:
        text += " The file is kept on the bot's server; ask an admin for it."
    return text


def render_channel_closed_reason(status: int, code: int) -> str:
    """Why a result could not be posted in its channel (Discord answered ``status``/``code``); kept on the job."""
    if status == 404:
        return "the channel was deleted, or I can no longer see it"
    return f"I may no longer post videos in that channel (Discord answered {status}, code {code})"


def render_not_posted(job: Job, reason: str) -> str:
    """The requester's one notice that their finished video could not be posted in its channel."""
    return (
        f"The video of job #{job.id} is made, but I could not post it: {reason}. It is kept for you: "
        "`/web` signs you in to the bot's page, where you can download it."
    )


def render_info(job: Job) -> str:
    """Every detail of a job, for the Info button."""
    lines = [
        f"**Job #{job.id}** ({job.status.value}) by <@{job.user_id}>, via {job.source.value}",
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


# -- /queue and /quota --------------------------------------------------------------------------------------------


def render_my_queue(mine: list[Job], places: dict[int, Any], now: datetime, *, withheld: Sequence[Job] = ()) -> str:
    """The /queue answer: the queue's length, then the caller's queued and running jobs (``places``: job id ->
    ``jobs.queue.queue_positions`` place of every pending job, position 0 = running), then their recent videos the
    safety check kept out of the channel (``withheld``), with the reason."""
    running_total = sum(1 for place in places.values() if place.position == 0)
    queued_total = len(places) - running_total
    lines = []
    for job in mine:
        snippet = neutralise_mentions(preview(job.prompt, MY_QUEUE_PREVIEW_CHARS))
        if job.status == JobStatus.RUNNING:
            progress = f", step {job.progress_step}/{job.progress_total}" if job.progress_total else ""
            lines.append(f"• #{job.id} running ({job.phase.value}{progress}, {display_name(job.model)}): {snippet}")
            continue
        place = places.get(job.id)
        if place is not None:
            eta = ""
            if place.eta_seconds is not None:
                eta = f", ready <t:{int(now.timestamp() + place.eta_seconds)}:R>"
            lines.append(f"• #{job.id} queued, position {place.position}{eta} ({display_name(job.model)}): {snippet}")
    header = f"Queue: {queued_total} waiting, {running_total} running."
    body = "\n".join(lines) if lines else "You have no queued or running videos."
    notes = [f"• #{job.id} was not posted: {job.error}" for job in withheld]
    return "\n".join([header, body, *notes])


def render_quota(status: QuotaStatus) -> str:
    """The /quota answer."""
    lines = [
        f"Budget: **{status.remaining:.0f}** of {status.budget:.0f} GPU-seconds left today "
        f"(used {status.used:.0f}, reserved for pending jobs {status.reserved:.0f}).",
        f"Pending jobs: {status.pending} of {status.max_pending}.",
    ]
    if status.refill_at is not None:
        lines.append(f"Next refill: <t:{int(status.refill_at.timestamp())}:R>.")
    return "\n".join(lines)


def render_signin_link(link: str, ttl_seconds: float) -> str:
    """The ``/web`` answer: the member's one-time sign-in ``link``, valid for ``ttl_seconds``."""
    minutes = int(ttl_seconds // 60)
    return (
        f"Your personal sign-in link to the web page (works once, within {minutes} minutes; do not share it):\n{link}"
    )


def job_list(job_ids: Sequence[int]) -> str:
    """Job ids as the texts name them, e.g. ``#12, #15``."""
    return ", ".join(f"#{job_id}" for job_id in job_ids)


def render_data_deleted(deleted: UserDataDeleted, other_user_id: int | None = None) -> str:
    """The ``/delete-my-data`` answer: the caller's own data, or (the operator) ``other_user_id``'s."""
    whose = "your" if other_user_id is None else f"<@{other_user_id}>'s"
    text = f"Deleted the stored images and videos of {len(deleted.job_ids)} of {whose} jobs."
    if deleted.reports:
        text += f" Deleted {deleted.reports} report(s) made by or about {'you' if other_user_id is None else 'them'}."
    if deleted.still_running:
        text += (
            f" Running now and asked to stop: {job_list(deleted.still_running)}; run this again once it has ended "
            "to delete its image too."
        )
    return text
