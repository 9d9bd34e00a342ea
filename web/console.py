"""The operator console's API (operator only): the queue with cancel, pause and resume, per-user quotas and bans,
workers and their state, stats, the audit log, and reported videos (delete, ban the maker, dismiss).

Each action is the same ``jobs`` operation as the Discord ``/operator`` command, audited the same way with the
operator's user id as the actor: ``pause_queue``/``resume_queue``, ``cancel_audited`` (bot scope),
``set_user_limit``, ``ban_and_settle``, ``unban_user``, ``settle_report`` (bot-wide scope; Delete also removes the
Discord message through the app's ``delete_message`` (``web.context.AppFacts``) and the disk copy).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from jobs.audit import record_action
from jobs.control import REPORT_ACTIONS, ban_and_settle, cancel_audited, pause_queue, resume_queue, settle_report
from jobs.copies import remove_copies
from jobs.listings import audit_page, queue_page
from jobs.models import Job, UserLimit, utcnow
from jobs.quota import effective_limits, quota_status, set_user_limit, unban_user
from jobs.safety import open_reports
from jobs.stats import admin_stats
from jobs.web_sessions import end_session_by_id, latest_roles, live_sessions, session_id
from jobs.workers import unavailable_reason
from web.auth import USER, WebUser, error, member_of
from web.context import PageContext
from web.limits import BadRequest, read_json, whole_number
from web.pages import policy_for
from web.render import iso

log = logging.getLogger(__name__)

QUEUE_PAGE_SIZE = 25
SESSIONS_SHOWN = 100  # the newest live sessions the console lists
AUDIT_PAGE_SIZE = 25
REPORTS_SHOWN = 25  # reported videos listed in the console
MAX_REASON_CHARS = 200
MAX_DAILY_GPU_SECONDS = 30 * 86400.0  # a budget override beyond a month of GPU time per day is a typo
MAX_PENDING_CAP = 10_000  # jobs; an override beyond this is a typo


def _operator(request: web.Request) -> WebUser:
    user = request[USER]
    if user is None or not user.is_operator:
        raise web.HTTPForbidden(
            text='{"error": "Only the bot\'s operator may use the console."}', content_type="application/json"
        )
    return user


def _int(value: Any, name: str) -> int:
    return whole_number(value, name)


def _limit_values(body: dict[str, Any]) -> tuple[float | None, int | None]:
    """The console's limits form: a finite budget of at most ``MAX_DAILY_GPU_SECONDS`` and a pending cap of at most
    ``MAX_PENDING_CAP`` (null or "" clears one); ``BadRequest`` otherwise."""
    daily_raw, pending_raw = body.get("daily_gpu_seconds"), body.get("max_pending")
    daily: float | None = None
    if daily_raw not in (None, ""):
        try:
            daily = float(daily_raw)
        except (TypeError, ValueError, OverflowError):
            raise BadRequest("daily_gpu_seconds must be a number of seconds") from None
        if not 0 <= daily <= MAX_DAILY_GPU_SECONDS:  # also refuses NaN and infinity
            raise BadRequest(f"daily_gpu_seconds must be between 0 and {MAX_DAILY_GPU_SECONDS:g}")
    pending = None if pending_raw in (None, "") else whole_number(pending_raw, "max_pending")
    if pending is not None and pending > MAX_PENDING_CAP:
        raise BadRequest(f"max_pending must be at most {MAX_PENDING_CAP}")
    return daily, pending


class Console:
    """The console handlers, over the server's :class:`~web.context.PageContext`."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    async def overview(self, request: web.Request) -> web.Response:
        """GET /api/console: queue, pause switch, workers, stats and the latest audit entries."""
        _operator(request)
        now = utcnow()
        async with self.ctx.readers() as session:
            queue = await queue_page(session, limit=QUEUE_PAGE_SIZE)
            stats = await admin_stats(session, now=now)
            audit = await audit_page(session, limit=AUDIT_PAGE_SIZE)
            reports = await open_reports(session, None, limit=REPORTS_SHOWN)
            signed_in = await live_sessions(session, limit=SESSIONS_SHOWN)
        problem = self.ctx.facts.worker_problem() or unavailable_reason(
            stats.workers, now=now, dead_after_s=self.ctx.config.worker_dead_after
        )
        return web.json_response(
            {
                "paused": queue.paused,
                "queue": [
                    {
                        "id": e.job_id,
                        "user_id": str(e.user_id),
                        "status": e.status.value,
                        "position": e.position,
                        "summary": e.summary,
                        "prompt": e.prompt,
                        "phase": e.phase,
                        "step": e.progress_step,
                        "total": e.progress_total,
                        "cancel_requested": e.cancel_requested,
                    }
                    for e in queue.entries
                ],
                "running": queue.running,
                "queued": queue.queued,
                "workers": [
                    {
                        "id": w.worker_id,
                        "host": w.host,
                        "pid": w.pid,
                        "state": w.state.value,
                        "stale": w.stale,
                        "job": w.current_job_id,
                        "jobs_done": w.jobs_done,
                        "restarts": w.restarts,
                        "gpu": w.gpu_name,
                        "last_heartbeat_at": iso(w.last_heartbeat_at),
                        "failure_reason": w.failure_reason,
                        "loaded_model": w.loaded_model,
                        "loadable_models": list(w.loadable_models),
                        "switches": w.switches,
                    }
                    for w in stats.workers
                ],
                "worker_problem": problem,
                "stats": {
                    name: {
                        "created": period.created,
                        "gpu_seconds": round(period.gpu_seconds, 1),
                        "by_state": {k.value: v for k, v in period.by_state.items()},
                        "failures": period.failures[:5],
                        "timings": [
                            {
                                "preset": t.preset,
                                "count": t.generation.count,
                                "mean_s": t.generation.mean_seconds,
                                "p95_s": t.generation.p95_seconds,
                            }
                            for t in period.timings
                        ],
                    }
                    for name, period in (("today", stats.today), ("week", stats.week))
                },
                "sessions": [
                    {
                        "id": session_id(s),
                        "user_id": str(s.user_id),
                        "guild_id": str(s.guild_id) if s.guild_id else None,
                        "operator": s.operator,
                        "role_ids": [str(role) for role in s.role_ids or ()],
                        "created_at": iso(s.created_at),
                        "expires_at": iso(s.expires_at),
                        "roles_checked_at": iso(s.roles_checked_at),
                    }
                    for s in signed_in
                ],
                "audit": [
                    {
                        "id": row.id,
                        "at": iso(row.created_at),
                        "actor_id": str(row.actor_id or ""),
                        "action": row.action,
                        "target_user_id": str(row.target_user_id or ""),
                        "job_id": row.job_id,
                        "scope": row.scope,
                        "detail": row.detail,
                    }
                    for row in audit.rows
                ],
                "reports": [
                    {
                        "job_id": job.id,
                        "user_id": str(job.user_id),
                        "guild_id": str(job.guild_id or ""),
                        "reports": count,
                        "first_at": iso(first),
                        "prompt": job.prompt,
                        "flagged": job.output_verdict == "unsafe",
                    }
                    for job, count, first in reports
                ],
            }
        )

    async def report_action(self, request: web.Request) -> web.Response:
        """POST /api/console/reports/{job_id}/{delete|ban|dismiss}: the operator's answer to a reported video, as
        ``/operator reports`` gives it (a ban is bot-wide)."""
        operator = _operator(request)
        job_id = _int(request.match_info["job_id"], "job id")
        action = request.match_info["action"]
        if action not in REPORT_ACTIONS:
            return error(400, f"action must be one of {', '.join(REPORT_ACTIONS)}")
        async with self.ctx.readers() as session:
            job = await session.get(Job, job_id)
        if job is None:
            return error(404, f"There is no job #{job_id}.")
        if action != "dismiss" and job.result_message_id is not None:
            await self.ctx.facts.delete_message(job.channel_id, job.guild_id, job.result_message_id)
        async with self.ctx.sessions.begin() as session:
            settled = await settle_report(session, job_id, action, by=operator.user_id, guild_id=None)
        if settled is None:
            return error(404, f"There is no job #{job_id}.")
        if action != "dismiss":
            await asyncio.to_thread(remove_copies, self.ctx.config.output_dir, [job_id])
        log.info(
            "operator %s: %s on reported job %s from the console (%d report(s))",
            operator.user_id,
            action,
            job_id,
            settled.reports,
        )
        return web.json_response(
            {"job_id": job_id, "action": action, "reports": settled.reports, "banned": settled.banned}
        )

    async def pause(self, request: web.Request) -> web.Response:
        user = _operator(request)
        body = await read_json(request)
        reason = str(body.get("reason") or "")[:MAX_REASON_CHARS] or None
        async with self.ctx.sessions.begin() as session:
            changed = await pause_queue(session, by=user.user_id, reason=reason)
        log.info("operator %s paused the queue from the console (changed=%s)", user.user_id, changed)
        return web.json_response({"paused": True, "changed": changed})

    async def resume(self, request: web.Request) -> web.Response:
        user = _operator(request)
        async with self.ctx.sessions.begin() as session:
            changed = await resume_queue(session, by=user.user_id)
        log.info("operator %s resumed the queue from the console (changed=%s)", user.user_id, changed)
        return web.json_response({"paused": False, "changed": changed})

    async def cancel(self, request: web.Request) -> web.Response:
        user = _operator(request)
        job_id = _int(request.match_info["job_id"], "job id")
        async with self.ctx.sessions.begin() as session:
            job = await session.get(Job, job_id)
            if job is None:
                return error(404, f"There is no job #{job_id}.")
            outcome = await cancel_audited(session, job, by=user.user_id, bot_wide=True)
        log.info("operator %s cancelled job %s from the console: %s", user.user_id, job_id, outcome.value)
        return web.json_response({"id": job_id, "outcome": outcome.value})

    async def end_session(self, request: web.Request) -> web.Response:
        """POST /api/console/sessions/{session_id}/end: that browser is signed out at once."""
        operator = _operator(request)
        sid = request.match_info["session_id"]
        async with self.ctx.sessions.begin() as session:
            user_id = await end_session_by_id(session, sid)
            if user_id is not None:
                await record_action(
                    session,
                    actor_id=operator.user_id,
                    action="end_web_session",
                    target_user_id=user_id,
                    detail={"session": sid},
                )
        if user_id is None:
            return error(404, "There is no such signed-in session.")
        log.info("operator %s ended web session %s of user %s", operator.user_id, sid, user_id)
        return web.json_response({"ended": sid, "user_id": str(user_id)})

    async def user(self, request: web.Request) -> web.Response:
        """GET /api/console/users/{user_id}: a user's quota, limits and ban."""
        operator = _operator(request)
        user_id = _int(request.match_info["user_id"], "user id")
        return web.json_response(await self._user_json(operator, user_id))

    async def _user_json(self, operator: WebUser, user_id: int) -> dict[str, Any]:
        async with self.ctx.readers() as session:
            # the roles of the user's newest web sign-in select their tiers here, as on their own page
            target = member_of(self.ctx.config, user_id, await latest_roles(session, user_id))
            policy = policy_for(self.ctx.config, target)
            status = await quota_status(session, user_id, policy)
            limits = await effective_limits(session, user_id, policy)
            override = await session.get(UserLimit, user_id)
        return {
            "user_id": str(user_id),
            "budget": status.budget,
            "budget_source": limits.budget_source,
            "used": status.used,
            "reserved": status.reserved,
            "remaining": status.remaining,
            "pending": status.pending,
            "max_pending": status.max_pending,
            "banned": limits.banned,
            "ban_reason": limits.ban_reason,
            "refill_at": iso(status.refill_at),
            "override": None
            if override is None
            else {"daily_gpu_seconds": override.daily_gpu_seconds, "max_pending": override.max_pending},
        }

    async def set_limits(self, request: web.Request) -> web.Response:
        """POST /api/console/users/{user_id}/limits {daily_gpu_seconds, max_pending} (null clears one)."""
        operator = _operator(request)
        user_id = _int(request.match_info["user_id"], "user id")
        daily, pending = _limit_values(await read_json(request))
        async with self.ctx.sessions.begin() as session:
            await set_user_limit(session, user_id, daily_gpu_seconds=daily, max_pending=pending, by=operator.user_id)
        log.info("operator %s set user %s's limits from the console", operator.user_id, user_id)
        return web.json_response(await self._user_json(operator, user_id))

    async def ban(self, request: web.Request) -> web.Response:
        operator = _operator(request)
        user_id = _int(request.match_info["user_id"], "user id")
        body = await read_json(request)
        reason = str(body.get("reason") or "")[:MAX_REASON_CHARS] or None
        async with self.ctx.sessions.begin() as session:
            outcome = await ban_and_settle(session, user_id, reason=reason, by=operator.user_id)
        log.info("operator %s banned user %s from the console", operator.user_id, user_id)
        data = await self._user_json(operator, user_id)
        data["cancelled_job_ids"] = outcome.cancelled_job_ids
        return web.json_response(data)

    async def unban(self, request: web.Request) -> web.Response:
        operator = _operator(request)
        user_id = _int(request.match_info["user_id"], "user id")
        async with self.ctx.sessions.begin() as session:
            await unban_user(session, user_id, by=operator.user_id)
        log.info("operator %s unbanned user %s from the console", operator.user_id, user_id)
        return web.json_response(await self._user_json(operator, user_id))
