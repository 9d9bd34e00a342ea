"""``/admin`` and ``/operator`` end to end: the real ``python -m bot`` (embedded worker on the tiny model) against
the fake Discord.

Who is who in the fake guild (created before the bot starts, so they are in its GUILD_CREATE):

- ``manager``: Manage Server only (no Administrator), ``owner``: Administrator only (which implies every
  permission): this server's admins through Discord's permissions, not the bot's operator;
- ``operator``: permissions 0, listed in ``ADMIN_USER_IDS`` (the older name of ``OPERATOR_USER_IDS``); ``moddy``:
  permissions 0, holds a role listed in ``ADMIN_ROLE_IDS``: both are the bot's operator;
- ``mallory``: permissions 0 and in no admin list; ``alice`` ... : ordinary members who make videos.

The worker sleeps ``SLEEP_PER_STEP_S`` in every denoising step, so a 100-step "blocker" job keeps it busy for half a
minute while a test looks at a stable queue; each test cancels what it started.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.permissions import OPERATOR_REFUSAL, SERVER_REFUSAL
from jobs.models import (
    AuditLog,
    BlockedTerm,
    GuildSettings,
    Job,
    JobStatus,
    LedgerKind,
    QueueState,
    QuotaLedger,
    UserLimit,
    Worker,
)
from tests.bot.harness import (
    Answer,
    BotProcess,
    answer_of,
    custom_ids,
    followup_text,
    job_id_from,
    queued_job,
    running_bot,
    wait_result,
)
from tests.bot.harness import animate as harness_animate
from tests.fakediscord import payloads
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import FakeInteraction, FakeMember

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

SLEEP_PER_STEP_S = 0.3  # worker fault hook: seconds slept in each denoising step
WORKER_POLL_INTERVAL_S = 0.1  # I2V_POLL_INTERVAL_S in the harness: an idle worker's wait between two claims
BLOCKER = {"resolution": "256p", "frames": 8, "steps": 100}  # ~30 s of worker time with the sleep above
ANSWER_TIMEOUT_S = 20.0
ADMIN_SUBCOMMANDS = [
    "queue",
    "cancel",
    "clear",
    "pause",
    "resume",
    "limits",
    "models",
    "ban",
    "unban",
    "stats",
    "log",
    "safety",
    "reports",
    "blocklist add",
    "blocklist remove",
    "blocklist list",
]
OPERATOR_SUBCOMMANDS = [
    "queue",
    "cancel",
    "pause",
    "resume",
    "quota",
    "tier",
    "ban",
    "unban",
    "stats",
    "log",
    "reports",
    "blocklist add",
    "blocklist remove",
    "blocklist list",
]


def top_level(subcommands: list[str]) -> list[str]:
    """The group's own options: subcommands and subcommand groups, in order."""
    return list(dict.fromkeys(sub.split()[0] for sub in subcommands))


@dataclass
class World:
    fake: FakeDiscord
    bot: BotProcess
    manager: FakeMember
    owner: FakeMember
    operator: FakeMember
    moddy: FakeMember
    mallory: FakeMember
    vic: FakeMember
    vip_role: int
    users: dict[str, FakeMember]
    other_guild: int
    other_manager: FakeMember
    olga: FakeMember


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    fake = FakeDiscord(bot_token="test-bot-token")
    await fake.start()
    gid = fake.guild.id
    mod_role = fake.add_role(gid, "moderators")
    vip_role = fake.add_role(gid, "vip")
    # Permissions computed by the fake from these roles, as Discord does for the interaction's member.
    managers_role = fake.add_role(gid, "server managers", permissions=payloads.PERM_MANAGE_GUILD)
    admins_role = fake.add_role(gid, "administrators", permissions=payloads.PERM_ADMINISTRATOR)
    manager = fake.add_member(gid, "manager", roles=[managers_role])
    owner = fake.add_member(gid, "owner", roles=[admins_role])
    operator = fake.add_member(gid, "operator", permissions=0)
    moddy = fake.add_member(gid, "moddy", permissions=0, roles=[mod_role])
    mallory = fake.add_member(gid, "mallory", permissions=0)
    vic = fake.add_member(gid, "vic", roles=[vip_role])
    users = {name: fake.add_member(gid, name) for name in ("bob", "carol", "dave", "erin", "frank", "gina")}
    users["alice"] = fake.member
    # A second server sharing the same GPU queue.
    other = fake.add_guild("Other Guild")
    other_managers = fake.add_role(other.id, "managers", permissions=payloads.PERM_MANAGE_GUILD)
    other_manager = fake.add_member(other.id, "otto", roles=[other_managers])
    olga = fake.add_member(other.id, "olga")
    bot = BotProcess(
        fake,
        tmp_path_factory.mktemp("admin-bot"),
        extra_env={
            "I2V_FAULT_SLEEP_PER_STEP": str(SLEEP_PER_STEP_S),
            "ADMIN_USER_IDS": str(operator.user_id),
            "ADMIN_ROLE_IDS": str(mod_role),
        },
    )
    async with running_bot(fake, bot):
        yield World(
            fake, bot, manager, owner, operator, moddy, mallory, vic, vip_role, users, other.id, other_manager, olga
        )


# ------------------------------------------------------------------------------------------------------ helpers


async def admin(
    world: World, sub: str, options: dict[str, Any] | None = None, member: FakeMember | None = None
) -> tuple[FakeInteraction, Answer]:
    """Run ``/admin <sub>`` as ``member`` (default: the Manage Server manager) and return its answer."""
    interaction = await world.fake.inject_slash(f"admin {sub}", options or {}, member=member or world.manager)
    return interaction, await answer_of(world.fake, interaction)


async def operator(
    world: World, sub: str, options: dict[str, Any] | None = None, member: FakeMember | None = None
) -> tuple[FakeInteraction, Answer]:
    """Run ``/operator <sub>`` as ``member`` (default: the operator) and return its answer."""
    interaction = await world.fake.inject_slash(f"operator {sub}", options or {}, member=member or world.operator)
    return interaction, await answer_of(world.fake, interaction)


async def click(world: World, custom_id: str, message_id: int, member: FakeMember) -> Answer:
    """Press a button on a message the bot sent."""
    interaction = await world.fake.inject_component(custom_id, message_id, member=member)
    return await answer_of(world.fake, interaction)


async def animate(world: World, member: FakeMember, **options: Any) -> str:
    """``/animate`` as ``member``; the bot's ephemeral follow-up text."""
    return await harness_animate(world.fake, member, timeout=ANSWER_TIMEOUT_S, **options)


async def queue_job(world: World, member: FakeMember, **options: Any) -> int:
    return await queued_job(world.fake, member, **options)


async def db_scalar(world: World, stmt: Any) -> Any:
    return await world.bot.read(lambda session: session.scalar(stmt))


async def db_all(world: World, stmt: Any) -> list[Any]:
    return await world.bot.select_all(stmt)


async def audit_rows(world: World) -> list[AuditLog]:
    """The whole audit log, oldest first."""
    return await db_all(world, select(AuditLog).order_by(AuditLog.created_at, AuditLog.id))


async def start_blocker(world: World, member: FakeMember) -> int:
    """Queue a long job for ``member`` and wait until the worker runs it."""
    job_id = await queue_job(world, member, **BLOCKER)
    await world.bot.wait_job(job_id, lambda j: j.status == JobStatus.RUNNING and j.progress_step >= 1)
    return job_id


async def cancel_and_wait(world: World, job_id: int) -> None:
    """Cancel a job as the manager and wait until it has stopped."""
    _, reply = await admin(world, "cancel", {"job": job_id})
    assert f"#{job_id}" in reply.content, reply.content
    await world.bot.wait_job(job_id, lambda j: j.status in (JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED))


QUEUE_LINE = re.compile(r"\*\*#(\d+)\*\* <@(\d+)> · (running[^·]*|queued, position (\d+))")
AUDIT_LINE = re.compile(r"(?:<@(\d+)>|system) \*\*([a-z_]+)\*\*")


def audit_entries(answer: Answer) -> list[tuple[int | None, str]]:
    """(actor id, action) of each line of an /admin log embed, in display order (newest first)."""
    lines = answer.embeds[0]["description"].splitlines()
    entries = []
    for line in lines:
        match = AUDIT_LINE.search(line)
        assert match, line
        entries.append((int(match[1]) if match[1] else None, match[2]))
    return entries


# -------------------------------------------------------------------------------------------------------- tests


async def test_admin_group_synced_with_permission_hint(world: World) -> None:
    command = world.fake.find_command("admin")
    assert command is not None
    assert command["default_member_permissions"] == str(1 << 5)  # Manage Server: a UI hint only
    assert sorted(o["name"] for o in command["options"]) == sorted(top_level(ADMIN_SUBCOMMANDS))
    group = world.fake.find_command("operator")
    assert group is not None and group["default_member_permissions"] == str(1 << 3)  # Administrator: a hint only
    assert sorted(o["name"] for o in group["options"]) == sorted(top_level(OPERATOR_SUBCOMMANDS))
    limits = next(o for o in command["options"] if o["name"] == "limits")
    resolution = next(o for o in limits["options"] if o["name"] == "max_resolution")
    assert [c["value"] for c in resolution["choices"]] == ["256p", "480p", "512p", "720p", "768p", "1024p", "none"]


async def test_every_admin_command_refused_without_manage_server(world: World) -> None:
    alice = world.users["alice"]
    admin_options: dict[str, dict[str, Any]] = {
        "queue": {},
        "cancel": {"job": 1},
        "clear": {},
        "pause": {"reason": "mine now"},
        "resume": {},
        "limits": {"max_frames": 8},
        "models": {"model": "ltxv", "allowed": False},
        "ban": {"user": alice, "reason": "x"},
        "unban": {"user": alice},
        "stats": {},
        "log": {},
        "safety": {"spoilers": True},
        "reports": {},
        "blocklist add": {"term": "sea"},
        "blocklist remove": {"term": "sea"},
        "blocklist list": {},
    }
    operator_options: dict[str, dict[str, Any]] = {
        "queue": {},
        "cancel": {"job": 1},
        "pause": {"reason": "mine now"},
        "resume": {},
        "quota": {"user": alice, "daily_seconds": 1.0, "max_pending": 1},
        "tier": {"role": world.vip_role, "daily_seconds": 1.0, "max_pending": 1},
        "ban": {"user": alice, "reason": "x"},
        "unban": {"user": alice},
        "stats": {},
        "log": {},
        "reports": {},
        "blocklist add": {"term": "sea"},
        "blocklist remove": {"term": "sea"},
        "blocklist list": {},
    }
    assert sorted(admin_options) == sorted(ADMIN_SUBCOMMANDS)
    assert sorted(operator_options) == sorted(OPERATOR_SUBCOMMANDS)
    audit_before = len(await audit_rows(world))
    for sub, values in admin_options.items():
        _, reply = await admin(world, sub, values, member=world.mallory)
        assert (reply.callback_type, reply.ephemeral, reply.content) == (4, True, SERVER_REFUSAL), sub
    # /operator: refused to mallory, and to this server's own admins (Manage Server, Administrator) too.
    for member in (world.mallory, world.manager, world.owner):
        for sub, values in operator_options.items():
            _, reply = await operator(world, sub, values, member=member)
            assert (reply.callback_type, reply.ephemeral, reply.content) == (4, True, OPERATOR_REFUSAL), sub
    # An ordinary member (the default member permissions, still no Manage Server) is refused too.
    _, reply = await admin(world, "pause", {}, member=alice)
    assert (reply.ephemeral, reply.content) == (True, SERVER_REFUSAL)

    # Nothing changed, and every refusal was logged with who tried what.
    assert len(await audit_rows(world)) == audit_before
    assert await db_scalar(world, select(QueueState.paused)) is False
    assert await db_scalar(world, select(func.count()).select_from(GuildSettings)) == 0
    assert await db_scalar(world, select(func.count()).select_from(UserLimit)) == 0
    assert await db_scalar(world, select(func.count()).select_from(BlockedTerm)) == 0
    log_text = world.bot.log_path.read_text(errors="replace")
    for sub in ADMIN_SUBCOMMANDS:
        assert f"refusal: user {world.mallory.user_id} (mallory) tried '/admin {sub}'" in log_text, sub
    for member in (world.mallory, world.manager, world.owner):
        for sub in OPERATOR_SUBCOMMANDS:
            line = f"refusal: user {member.user_id} ({member.username}) tried '/operator {sub}'"
            assert line in log_text, line
    assert f"refusal: user {alice.user_id} (alice) tried '/admin pause'" in log_text


async def test_administrator_admin_user_ids_and_admin_role_ids_are_admins(world: World) -> None:
    _, reply = await admin(world, "stats", {}, member=world.owner)
    assert reply.ephemeral and reply.embeds[0]["title"] == "Video bot statistics for this server", reply
    assert [f["name"] for f in reply.embeds[0]["fields"]] == [
        "Today (UTC)",
        "Last 7 days",
        "Content safety",
    ]  # no workers
    # Both have permissions 0: only the settings make them admins.
    _, reply = await admin(world, "limits", {}, member=world.moddy)
    assert reply.ephemeral and reply.content.startswith("No caps on this server"), reply.content
    _, reply = await admin(world, "queue", {}, member=world.operator)
    assert reply.ephemeral and reply.embeds[0]["title"].startswith("Queue:"), reply
    _, reply = await operator(world, "stats", {}, member=world.moddy)
    assert reply.ephemeral and reply.embeds[0]["title"] == "Video bot statistics", reply


async def test_permissions_are_read_from_each_interaction(world: World) -> None:
    # Granting Manage Server takes effect on the next interaction, and so does taking it away: nothing is cached.
    world.fake.set_member_permissions(world.mallory, payloads.PERMS_MEMBER | payloads.PERM_MANAGE_GUILD)
    try:
        _, reply = await admin(world, "limits", {}, member=world.mallory)
        assert reply.content.startswith("No caps on this server"), reply.content
    finally:
        world.fake.set_member_permissions(world.mallory, 0)
    _, reply = await admin(world, "limits", {}, member=world.mallory)
    assert reply.content == SERVER_REFUSAL


async def test_queue_listing_paging_forged_clicks_cancel_and_clear(world: World) -> None:
    from jobs.queue import queue_position

    fake, bot = world.fake, world.bot
    bob, carol, frank = world.users["bob"], world.users["carol"], world.users["frank"]
    blocker = await start_blocker(world, bob)
    queued = [await queue_job(world, bob) for _ in range(4)]
    queued += [await queue_job(world, carol) for _ in range(5)]
    queued.append(await queue_job(world, frank, preset="quick", resolution="256p", frames=8, steps=10))
    owners = {job.id: job.user_id for job in await bot.jobs(Job.id.in_(queued))}

    async def places(session: Any) -> dict[int, int | None]:
        return {j: (await queue_position(session, j)).position for j in queued}

    positions = await bot.read(places)
    assert sorted(positions.values()) == list(range(1, 11))
    in_claim_order = sorted(queued, key=positions.__getitem__)

    # Page 1: the running job, then nine queued jobs in claim order, with the store's own positions.
    listing, page1 = await admin(world, "queue")
    assert page1.ephemeral
    embed = page1.embeds[0]
    assert embed["title"] == "Queue: 1 running, 10 queued"
    assert embed["footer"]["text"] == "Page 1 of 2"
    entries = QUEUE_LINE.findall(embed["description"])
    assert [(int(j), int(u)) for j, u, _, _ in entries] == [(blocker, bob.user_id)] + [
        (j, owners[j]) for j in in_claim_order[:9]
    ]
    assert entries[0][2].startswith("running, denoising")
    assert [int(p) for _, _, _, p in entries[1:]] == list(range(1, 10))
    # Parameter summaries and ages: the blocker's 100 steps, the nine others' 10 steps; the prompt is quoted.
    assert re.search(r"\w+ 256p 8f 100 steps 8 fps seed \d+ · \"waves roll in slowly\"", embed["description"])
    assert len(re.findall(r" 256p 8f 10 steps 8 fps seed \d+ · ", embed["description"])) == 9
    assert len(re.findall(r" · \d+ (?:s|min(?: \d+ s)?) old\n", embed["description"])) == 10
    shown = [blocker] + in_claim_order[:9]
    assert [c for c in page1.custom_ids if c.startswith("i2va:cancel:")] == [f"i2va:cancel:{j}" for j in shown]
    assert {"i2va:queue:0:prev", "i2va:queue:0:refresh", "i2va:queue:0:next"} <= set(page1.custom_ids)
    message_id = fake.interactions[listing.id].original_message_id
    assert message_id is not None

    # Forged clicks by mallory (permissions 0) on the admin's listing and on carol's status message: refused.
    carol_job = next(j for j in in_claim_order[:9] if owners[j] == carol.user_id)
    for custom_id in (f"i2va:cancel:{carol_job}", "i2va:queue:0:next", "i2va:queue:0:refresh"):
        reply = await click(world, custom_id, message_id, world.mallory)
        assert (reply.callback_type, reply.ephemeral, reply.content) == (4, True, SERVER_REFUSAL), custom_id
    status_message = next(
        r.response
        for r in fake.requests
        if r.method == "POST"
        and r.status == 200
        and isinstance(r.response, dict)
        and f"i2v:cancel:{carol_job}" in custom_ids(r.json)
    )
    reply = await click(world, f"i2v:cancel:{carol_job}", int(status_message["id"]), world.mallory)
    assert reply.ephemeral and reply.content == f"There is no such job of yours (#{carol_job}).", reply.content
    assert {j.status for j in await bot.jobs(Job.id.in_(queued))} == {JobStatus.QUEUED}
    log_text = bot.log_path.read_text(errors="replace")
    assert f"refusal: user {world.mallory.user_id} (mallory) tried 'button i2va:cancel:{carol_job}'" in log_text

    # Next page (admin): the tenth queued job, which the manager then cancels from the listing.
    page2 = await click(world, "i2va:queue:0:next", message_id, world.manager)
    assert page2.embeds[0]["footer"]["text"] == "Page 2 of 2"
    last = in_claim_order[9]
    assert [(int(j), int(p)) for j, _, _, p in QUEUE_LINE.findall(page2.embeds[0]["description"])] == [(last, 10)]
    reply = await click(world, f"i2va:cancel:{last}", message_id, world.manager)
    assert reply.ephemeral and f"Cancelled job #{last} of <@{owners[last]}>" in reply.content, reply.content
    assert (await bot.job(last)).status == JobStatus.CANCELLED
    refund = await db_scalar(
        world, select(QuotaLedger.amount).where(QuotaLedger.job_id == last, QuotaLedger.kind == LedgerKind.REFUND)
    )
    assert refund is not None and refund > 0
    row = (await audit_rows(world))[-1]
    assert (row.actor_id, row.action, row.job_id, row.target_user_id, row.detail["outcome"]) == (
        world.manager.user_id,
        "cancel_job",
        last,
        owners[last],
        "cancelled",
    )

    # Clear: mallory replaying the confirmation is refused; a stale (expired) confirmation does nothing; the
    # manager's confirmation cancels every queued job and leaves the running one.
    clear_call, confirm = await admin(world, "clear")
    assert "Cancel all 9 queued job(s)" in confirm.content, confirm.content
    (button,) = [c for c in confirm.custom_ids if c.startswith("i2va:clear:")]
    confirm_message = fake.interactions[clear_call.id].original_message_id
    assert confirm_message is not None
    reply = await click(world, button, confirm_message, world.mallory)
    assert (reply.ephemeral, reply.content) == (True, SERVER_REFUSAL)
    stale = copy.deepcopy(fake.messages[confirm_message])
    stale["id"] = str(payloads.snowflake())
    stale["components"][0]["components"][0]["custom_id"] = "i2va:clear:1"
    fake.messages[int(stale["id"])] = stale
    expired = await click(world, "i2va:clear:1", int(stale["id"]), world.manager)
    assert expired.callback_type == 7 and "expired" in expired.content, expired
    assert sum(j.status == JobStatus.QUEUED for j in await bot.jobs(Job.id.in_(queued))) == 9
    done = await click(world, button, confirm_message, world.manager)
    assert "Cleared the queue: 9 queued job(s) cancelled and refunded" in done.content, done.content
    assert {j.status for j in await bot.jobs(Job.id.in_(queued))} == {JobStatus.CANCELLED}
    assert (await bot.job(blocker)).status == JobStatus.RUNNING
    row = (await audit_rows(world))[-1]
    assert (row.actor_id, row.action, row.guild_id, row.detail) == (
        world.manager.user_id,
        "clear_queue",
        fake.guild.id,
        {"cancelled": 9},
    )

    await cancel_and_wait(world, blocker)


async def test_queue_and_cancel_are_scoped_to_the_server(world: World) -> None:
    _, reply = await admin(world, "cancel", {"job": 987654})
    assert reply.content == "There is no job #987654 on this server.", reply.content

    olga_job = await start_blocker(world, world.olga)
    # This server's listing does not show the other server's job; that server's own admin sees it.
    _, here = await admin(world, "queue")
    assert here.embeds[0]["title"] == "Queue: 0 running, 0 queued"
    assert here.embeds[0]["description"] == "Nothing is queued or running on this server."
    _, there = await admin(world, "queue", member=world.other_manager)
    assert there.embeds[0]["title"] == "Queue: 1 running, 0 queued"
    assert f"**#{olga_job}** <@{world.olga.user_id}> · running" in there.embeds[0]["description"]
    # A Manage Server admin here cannot cancel it (it does not even exist for them); the operator can, with
    # /operator cancel (/admin cancel is this server's, for the operator too).
    audit_before = len(await audit_rows(world))
    for member in (world.manager, world.operator):
        _, reply = await admin(world, "cancel", {"job": olga_job}, member=member)
        assert reply.content == f"There is no job #{olga_job} on this server.", reply.content
    assert (await world.bot.job(olga_job)).status == JobStatus.RUNNING
    assert len(await audit_rows(world)) == audit_before
    _, reply = await operator(world, "cancel", {"job": olga_job})
    assert reply.content.startswith(f"Stopping job #{olga_job} of <@{world.olga.user_id}>"), reply.content
    await world.bot.wait_job(olga_job, lambda j: j.status == JobStatus.CANCELLED)
    row = (await audit_rows(world))[-1]
    assert (row.actor_id, row.action, row.job_id, row.guild_id, row.scope, row.detail) == (
        world.operator.user_id,
        "cancel_job",
        olga_job,
        world.other_guild,
        "bot",
        {"outcome": "requested"},
    )


async def test_pause_stops_claiming_and_resume_runs_the_queued_job(world: World) -> None:
    bot = world.bot
    erin, gina = world.users["erin"], world.users["gina"]
    blocker = await start_blocker(world, erin)
    waiting = await queue_job(world, erin)

    _, reply = await operator(world, "pause", {"reason": "maintenance"})
    assert reply.content.startswith("Paused on every server"), reply.content
    # The blocker stops; the worker is free and polls every WORKER_POLL_INTERVAL_S, yet claims nothing.
    await cancel_and_wait(world, blocker)
    # A new request while paused is accepted and queued, and told it waits (with the operator's reason).
    text = await animate(world, gina)
    assert "Queued as job #" in text and "paused" in text and "maintenance" in text, text
    assert "starts after resume" in text, text
    held = job_id_from(text)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 20 * WORKER_POLL_INTERVAL_S:
        for job in await bot.jobs(Job.id.in_([waiting, held])):
            assert (job.status, job.attempt) == (JobStatus.QUEUED, 0), job
        await asyncio.sleep(WORKER_POLL_INTERVAL_S / 2)
    (worker,) = await db_all(world, select(Worker))
    assert worker.state.value == "idle"

    _, reply = await operator(world, "resume")
    assert reply.content.startswith("Resumed"), reply.content
    resumed_at = await db_scalar(world, select(QueueState.changed_at))
    first = None
    deadline = time.monotonic() + 10
    while first is None:
        started = [j.started_at for j in await bot.jobs(Job.id.in_([waiting, held])) if j.started_at]
        first = min(started) if started else None
        assert time.monotonic() < deadline, "nothing was claimed after resume"
        await asyncio.sleep(0.05)
    # How soon is a latency, not a rule: the worker stamps started_at from its own clock, read before the claim
    # that saw the resume, so under load the stamps of the two processes may even come out in the other order.
    delay_s = (first - resumed_at).total_seconds()
    print(f"claim after resume: {delay_s:.3f} s (poll interval {WORKER_POLL_INTERVAL_S} s)")
    for job_id in (waiting, held):
        await wait_result(world.fake, job_id)
        assert (await bot.job(job_id)).status == JobStatus.SUCCEEDED


async def test_limits_refuse_requests_above_the_cap(world: World) -> None:
    alice = world.users["alice"]
    _, reply = await admin(world, "limits", {"max_resolution": "256p", "max_frames": 8, "max_steps": 10})
    assert reply.content == ("Updated. This server allows resolution up to 256p, up to 8 frames, up to 10 steps."), (
        reply.content
    )
    row = await db_scalar(world, select(GuildSettings).where(GuildSettings.guild_id == world.fake.guild.id))
    assert (row.max_resolution, row.max_frames, row.max_steps, row.updated_by) == ("256p", 8, 10, world.manager.user_id)

    # The refusal names the field, the server's cap and what was asked for (wording is the request path's).
    for field, asked, cap in (("resolution", "512p", "256p"), ("frames", 12, "8"), ("steps", 20, "10")):
        text = await animate(world, alice, **{field: asked})
        assert text.startswith("This server allows"), text
        assert field in text and re.search(rf"\b{cap}\b", text) and re.search(rf"\b{asked}\b", text), text
    assert await world.bot.jobs(Job.user_id == alice.user_id) == []

    _, reply = await admin(world, "limits", {"max_frames": 3})
    assert reply.content == "max_frames must be 0 (no cap) or between 8 and 257; you gave 3.", reply.content
    _, reply = await admin(world, "limits", {"max_resolution": "none", "max_frames": 0, "max_steps": 0})
    assert reply.content == (
        "Updated. This server allows any resolution, any number of frames, any number of steps."
    ), reply.content
    _, reply = await admin(world, "limits", {}, member=world.moddy)
    assert reply.content == "This server allows any resolution, any number of frames, any number of steps."


async def test_quota_shows_and_sets_and_tier_applies_to_role(world: World) -> None:
    alice = world.users["alice"]
    _, reply = await operator(world, "quota", {"user": alice})
    assert f"<@{alice.user_id}>'s quota:" in reply.content
    assert "Budget 100000 GPU-seconds per 24 h (from default)" in reply.content, reply.content
    assert "Pending jobs: 0 of 5." in reply.content

    _, reply = await operator(world, "quota", {"user": alice, "daily_seconds": 50.0, "max_pending": 1})
    assert "Updated" in reply.content and "Budget 50 GPU-seconds per 24 h (from override)" in reply.content
    assert "Pending jobs: 0 of 1." in reply.content
    # Only max_pending given: the budget override stays.
    _, reply = await operator(world, "quota", {"user": alice, "max_pending": 2})
    assert "Budget 50 GPU-seconds" in reply.content and "Pending jobs: 0 of 2." in reply.content
    own = await world.fake.inject_slash("quota", {}, member=alice)
    own_text = await followup_text(world.fake, own)
    assert "of 50 GPU-seconds" in own_text and "Pending jobs: 0 of 2." in own_text, own_text

    _, reply = await operator(world, "quota", {"user": alice, "reset": True})
    assert "(from default)" in reply.content and "Pending jobs: 0 of 5." in reply.content
    _, reply = await operator(world, "quota", {"user": alice, "reset": True, "max_pending": 3})
    assert reply.content == "Use reset alone, or give daily_seconds / max_pending without reset."

    _, reply = await operator(world, "tier", {"role": world.vip_role, "daily_seconds": 777.0, "max_pending": 3})
    assert f"<@&{world.vip_role}> now get 777 GPU-seconds per 24 h and up to 3 pending" in reply.content, reply
    own = await world.fake.inject_slash("quota", {}, member=world.vic)
    own_text = await followup_text(world.fake, own)
    assert "of 777 GPU-seconds" in own_text and "Pending jobs: 0 of 3." in own_text, own_text


async def test_ban_cancels_queued_jobs_and_refuses_new_requests(world: World) -> None:
    bot = world.bot
    dave = world.users["dave"]
    running = await start_blocker(world, dave)
    queued = [await queue_job(world, dave), await queue_job(world, dave)]

    _, reply = await operator(world, "ban", {"user": dave, "reason": "spam"})
    assert reply.content.splitlines() == [
        f"<@{dave.user_id}> is banned: spam.",
        f"Cancelled and refunded their queued job(s) #{queued[0]}, #{queued[1]}.",
        f"Left running (will be delivered, not retried): #{running}.",
    ], reply.content
    for job in await bot.jobs(Job.id.in_(queued)):
        assert job.status == JobStatus.CANCELLED
    refunds = await db_all(
        world, select(QuotaLedger.job_id).where(QuotaLedger.job_id.in_(queued), QuotaLedger.kind == LedgerKind.REFUND)
    )
    assert sorted(refunds) == queued
    job = await bot.job(running)
    assert job.status == JobStatus.RUNNING and job.max_attempts == job.attempt == 1
    text = await animate(world, dave)
    assert "not allowed to make videos" in text and "spam" in text, text
    rows = (await audit_rows(world))[-2:]
    assert [(r.action, r.target_user_id, r.scope) for r in rows] == [
        ("ban_user", dave.user_id, "bot"),
        ("ban_settle_jobs", dave.user_id, "bot"),
    ]
    assert rows[1].detail == {"cancelled": queued, "running_not_retried": [running]}

    _, reply = await operator(world, "ban", {"user": world.operator})
    assert reply.content == "You cannot ban yourself."
    await cancel_and_wait(world, running)

    _, reply = await operator(world, "unban", {"user": dave})
    assert reply.content == f"<@{dave.user_id}> may make videos again."
    _, reply = await operator(world, "unban", {"user": dave})
    assert reply.content == f"<@{dave.user_id}> was not banned."
    again = await queue_job(world, dave, steps=10)
    await cancel_and_wait(world, again)


async def test_stats_show_jobs_times_failures_and_worker(world: World) -> None:
    _, reply = await operator(world, "stats")
    assert reply.ephemeral
    embed = reply.embeds[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert list(fields) == ["Today (UTC)", "Last 7 days", "Workers", "Content safety"]
    jobs = await world.bot.jobs()
    by_state = {s: sum(j.status == s for j in jobs) for s in JobStatus}
    expected = f"{len(jobs)} jobs: " + ", ".join(f"{s.value} {n}" for s, n in by_state.items())
    assert fields["Last 7 days"].startswith(expected), (fields["Last 7 days"], expected)
    assert by_state[JobStatus.SUCCEEDED] >= 1 and by_state[JobStatus.CANCELLED] >= 10
    assert "custom: wait mean" in fields["Last 7 days"] or "quick: wait mean" in fields["Last 7 days"]
    assert "GPU time used:" in fields["Today (UTC)"]
    (worker,) = await db_all(world, select(Worker))
    assert fields["Workers"].startswith("Embedded worker: ")
    assert f"`{worker.id}`: {worker.state.value}" in fields["Workers"]
    assert (worker.gpu_name or "no GPU reported") in fields["Workers"]
    assert f"{worker.restarts} restarts" in fields["Workers"]
    assert embed["footer"]["text"] == "Queue running"
    print("/admin stats embed:", *(f"[{name}]\n{value}" for name, value in fields.items()), sep="\n")


async def test_audit_log_shows_every_action_in_order(world: World) -> None:
    alice, erin = world.users["alice"], world.users["erin"]
    finished = (await world.bot.jobs(Job.status == JobStatus.SUCCEEDED))[0].id
    before = len(await audit_rows(world))
    steps: list[tuple[FakeMember, str, dict[str, Any], str, str]] = [
        (world.operator, "operator pause", {}, "pause_queue", "bot"),
        (world.operator, "operator resume", {}, "resume_queue", "bot"),
        (world.moddy, "admin limits", {"max_steps": 50}, "set_guild_limits", "server"),
        (world.operator, "operator quota", {"user": alice, "daily_seconds": 300.0}, "set_user_limit", "bot"),
        (
            world.operator,
            "operator tier",
            {"role": world.vip_role, "daily_seconds": 900.0, "max_pending": 4},
            "set_role_tier",
            "bot",
        ),
        (world.moddy, "operator ban", {"user": erin, "reason": "flooding"}, "ban_user", "bot"),
        (world.moddy, "operator unban", {"user": erin}, "unban_user", "bot"),
        (world.manager, "admin cancel", {"job": finished}, "cancel_job", "server"),
        (world.manager, "admin pause", {}, "pause_server", "server"),
        (world.manager, "admin resume", {}, "resume_server", "server"),
        (world.manager, "admin limits", {"max_steps": 0}, "set_guild_limits", "server"),
    ]
    for member, command, values, _, _ in steps:
        interaction = await world.fake.inject_slash(command, values, member=member)
        reply = await answer_of(world.fake, interaction)
        assert reply.content not in (SERVER_REFUSAL, OPERATOR_REFUSAL), command
    expected = [(member.user_id, action) for member, _, _, action, _ in steps]

    rows = await audit_rows(world)
    assert [(r.actor_id, r.action) for r in rows[before:]] == expected
    assert [r.scope for r in rows[before:]] == [scope for *_, scope in steps]
    assert all(r.created_at is not None for r in rows)

    listing, page1 = await operator(world, "log")
    shown = audit_entries(page1)
    assert shown[: len(expected)] == list(reversed(expected))
    newest_first = [(r.actor_id, r.action) for r in reversed(rows)]
    assert shown == newest_first[:15]
    lines = page1.embeds[0]["description"].splitlines()
    assert "[bot-wide] " in lines[len(expected) - 1] and "**pause_queue**" in lines[len(expected) - 1]
    assert f"[server in server {world.fake.guild.id}] <@{world.manager.user_id}> **set_guild_limits**" in lines[0]
    assert page1.embeds[0]["footer"]["text"] == f"Page 1 of {(len(rows) + 14) // 15} · {len(rows)} actions"
    message_id = world.fake.interactions[listing.id].original_message_id
    assert message_id is not None
    page2 = await click(world, "i2va:olog:0:next", message_id, world.operator)
    assert audit_entries(page2) == newest_first[15:30]
    for member in (world.mallory, world.manager):
        refused = await click(world, "i2va:olog:1:next", message_id, member)
        assert refused.content == OPERATOR_REFUSAL

    # This server's own log (its admins' view): only rows recorded for this server, bot-wide ones left out.
    _, own = await admin(world, "log")
    own_rows = [(r.actor_id, r.action) for r in reversed(rows) if r.guild_id == world.fake.guild.id]
    assert audit_entries(own) == own_rows[:15]
    assert "pause_queue" not in own.embeds[0]["description"]
