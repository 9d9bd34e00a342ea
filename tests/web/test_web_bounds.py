"""Every resource the page offers is bounded: bodies per route (413 before reading), malformed requests (400, never
500), event streams per user (429) and their lifetime, image checks and job creation per user per minute, the
open endpoints (/metrics read from the store at most every few seconds, /healthz without details for anyone but
the operator), byte ranges of videos and images read a chunk at a time, and one access-log line per request."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from jobs.models import JobStatus
from jobs.transitions import claim_next_job, finish_job
from jobs.web_sessions import create_link
from jobs.workers import register_worker
from tests.web.inproc import OPERATOR_ID, Page, page
from tests.web.webharness import SAMPLE_IMAGE
from web import events
from web.limits import CHECKS_PER_MINUTE, JSON_BODY_CAP_BYTES, STREAMS_PER_USER
from web.metrics import METRICS_CACHE_SECONDS

HUGE = "9" * 30  # beyond any database integer


async def error_of(response: Any) -> str:
    return str((await response.json())["error"])


async def test_a_sign_in_body_over_1_kib_is_refused_before_it_is_read(sqlite_url: str, tmp_path: Path) -> None:
    async with page(sqlite_url, tmp_path) as p:
        response = await p.client.post(
            "/signin", data=b"token=" + b"a" * 2000, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status == 413 and "larger than this address accepts" in await error_of(response)

        async def chunked() -> Any:  # no Content-Length: refused after 1 KiB + one chunk is read
            for _ in range(64):
                yield b"a" * 1024

        response = await p.client.post("/signin", data=chunked())
        assert response.status == 413
        # an upload-sized body to a JSON route is refused from its declared length, signed in or not
        user = await p.sign_in(7)
        response = await user.post(
            "/api/signout", data=b"{" + b" " * (JSON_BODY_CAP_BYTES + 10) + b"}", **{"Content-Type": "application/json"}
        )
        assert response.status == 413
        response = await p.client.post("/api/console/pause", data=b"x" * (20 * 1024 * 1024))
        assert response.status == 413
        assert (await user.get("/api/me")).status == 200  # still signed in: the refused sign-out did nothing


async def test_ids_out_of_range_and_malformed_json_answer_400(sqlite_url: str, tmp_path: Path) -> None:
    async with page(sqlite_url, tmp_path) as p:
        user = await p.sign_in(8)
        operator = await p.sign_in(OPERATOR_ID)
        for path in (
            f"/api/jobs/{HUGE}",
            "/api/jobs/abc",
            "/api/jobs/0",
            f"/api/jobs/{HUGE}/video.mp4",
            f"/api/jobs/{HUGE}/events",
        ):
            response = await user.get(path)
            assert response.status == 400 and "job id" in await error_of(response), path
        for path in (f"/api/jobs/{HUGE}/cancel", f"/api/jobs/{HUGE}/delete", f"/api/jobs/{HUGE}/again?mode=same"):
            assert (await user.post(path)).status == 400, path
        assert (await operator.get(f"/api/console/users/{HUGE}")).status == 400
        assert (await operator.post(f"/api/console/jobs/{HUGE}/cancel")).status == 400
        status, refused = await user.create_job(image=False, parent=HUGE)
        assert status == 400, refused
        for path in ("/api/jobs", "/api/images/check"):  # not a multipart form
            response = await user.post(path, data=b"prompt=x", **{"Content-Type": "application/x-www-form-urlencoded"})
            assert response.status == 400 and "multipart" in await error_of(response), path
            response = await user.post(path, data=b"--x\r\nbroken", **{"Content-Type": "multipart/form-data"})
            assert response.status == 400, path
        json_type = {"Content-Type": "application/json"}
        for body in (b"{not json", b"[1, 2]", b'"text"', b"[" * 10000):
            response = await operator.post("/api/console/pause", data=body, **json_type)
            assert response.status == 400 and "JSON object" in await error_of(response), body[:20]
        for limits in (
            {"max_pending": HUGE},
            {"max_pending": -3},
            {"daily_gpu_seconds": "nan"},
            {"daily_gpu_seconds": "1e400"},
            {"daily_gpu_seconds": [1]},
        ):
            response = await operator.post("/api/console/users/8/limits", data=json.dumps(limits), **json_type)
            assert response.status == 400, (limits, response.status, await response.text())
        response = await operator.post("/api/console/users/8/limits", data=json.dumps({"max_pending": 3}), **json_type)
        assert response.status == 200 and (await response.json())["max_pending"] == 3


async def test_each_user_holds_a_few_event_streams_and_each_ends_in_time(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with page(sqlite_url, tmp_path) as p:
        user, other = await p.sign_in(9), await p.sign_in(10)
        status, job = await user.create_job()
        assert status == 201 and job["pending"], job  # no worker: it stays queued
        path = f"/api/jobs/{job['id']}/events"
        streams = [await user.get(path) for _ in range(STREAMS_PER_USER)]
        assert all(s.status == 200 for s in streams)
        assert (await streams[0].content.readuntil(b"\n\n")).startswith(b"retry: ")
        refused = await user.get(path)
        assert refused.status == 429 and "Too many open progress streams" in await error_of(refused)
        assert (await other.get(path)).status == 404  # not their job
        status, own = await other.create_job()
        assert status == 201
        mine = await other.get(f"/api/jobs/{own['id']}/events")  # another user's count is their own
        assert mine.status == 200
        mine.close()
        streams.pop().close()  # the page goes away: its slot is free again
        for _ in range(50):
            await asyncio.sleep(0.05)
            if p.server.limits.streams.count(9) < STREAMS_PER_USER:
                break
        again = await user.get(path)
        assert again.status == 200
        for stream in streams:
            stream.close()
        again.close()
        # a stream ends after its set time, its job still queued (the browser opens a new one later)
        monkeypatch.setattr(events, "STREAM_MAX_SECONDS", 0.5)
        response = await user.get(path)
        body = await asyncio.wait_for(response.read(), timeout=10)
        assert b'"status": "queued"' in body
        # and an open stream ends soon after its session does (signed out elsewhere, a ban)
        monkeypatch.setattr(events, "STREAM_MAX_SECONDS", 600.0)
        monkeypatch.setattr(events, "SESSION_CHECK_SECONDS", 0.3)
        response = await user.get(path)
        assert (await response.content.readuntil(b"\n\n")).startswith(b"retry: ")
        assert (await user.post("/api/signout")).status == 200
        body = await asyncio.wait_for(response.read(), timeout=10)
        assert body.endswith(b"event: signed-out\ndata: {}\n\n"), body[-200:]


async def test_image_checks_and_new_jobs_are_limited_per_user(sqlite_url: str, tmp_path: Path) -> None:
    import aiohttp

    async with page(sqlite_url, tmp_path) as p:
        user, other = await p.sign_in(11), await p.sign_in(12)

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("image", SAMPLE_IMAGE.read_bytes(), filename="s.png", content_type="image/png")
            return data

        answers = [(await user.post("/api/images/check", data=form())).status for _ in range(CHECKS_PER_MINUTE + 1)]
        assert answers == [200] * CHECKS_PER_MINUTE + [429], answers
        assert (await other.post("/api/images/check", data=form())).status == 200


async def test_metrics_scraped_100_times_reads_the_store_a_few_times(sqlite_url: str, tmp_path: Path) -> None:
    async with page(sqlite_url, tmp_path) as p:
        p.statements.clear()
        response = await p.client.get("/metrics")
        assert response.status == 200 and "i2v_jobs" in await response.text()
        one_snapshot = len(p.statements)
        assert one_snapshot > 0
        for _ in range(99):
            response = await p.client.get("/metrics")
            assert response.status == 200 and "i2v_jobs" in await response.text()
        # 100 scrapes read the store's aggregates once per METRICS_CACHE_SECONDS: once, twice if a period ended
        assert len(p.statements) <= 2 * one_snapshot, (one_snapshot, len(p.statements))
        assert METRICS_CACHE_SECONDS >= 1.0


async def test_healthz_shows_details_to_the_operator_only(sqlite_url: str, tmp_path: Path) -> None:
    async with page(sqlite_url, tmp_path) as p:
        async with p.server.sessions.begin() as session:
            await register_worker(session, "gpu-box-7:1234", host="gpu-box-7", pid=1234, model="tiny")
        response = await p.client.get("/healthz")
        assert response.status == 200 and await response.json() == {"status": "ok", "workers": 1}
        operator = await p.sign_in(OPERATOR_ID)
        assert "gpu-box-7" in await (await operator.get("/healthz")).text()
        member = await p.sign_in(13)
        assert "gpu-box-7" not in await (await member.get("/healthz")).text()


async def finished_video(p: Page, user_id: int, video: bytes) -> int:
    signed = await p.sign_in(user_id)
    status, job = await signed.create_job()
    assert status == 201, job
    async with p.server.sessions.begin() as session:
        claimed = await claim_next_job(session, "w1", lease_seconds=60)
        assert claimed is not None and claimed.id == job["id"]
        assert await finish_job(session, claimed.id, claimed.attempt, worker_id="w1", video=video, gpu_seconds=1.0)
    return int(job["id"])


async def test_video_and_image_answer_byte_ranges_read_a_chunk_at_a_time(sqlite_url: str, tmp_path: Path) -> None:
    video = bytes(range(256)) * 12_000  # 3 MB: three chunks
    async with page(sqlite_url, tmp_path) as p:
        job_id = await finished_video(p, 14, video)
        user = await p.sign_in(14)
        path = f"/api/jobs/{job_id}/video.mp4"
        p.statements.clear()
        whole = await user.get(path)
        assert whole.status == 200 and whole.headers["Accept-Ranges"] == "bytes"
        assert int(whole.headers["Content-Length"]) == len(video) and await whole.read() == video
        # never the whole column: a size, then substr() of at most a chunk per statement
        assert not [s for s in p.statements if "job_videos.data" in s and "substr" not in s], p.statements
        for header, first, last in (
            ("bytes=0-1", 0, 1),
            ("bytes=100-", 100, len(video) - 1),
            ("bytes=-500", len(video) - 500, len(video) - 1),
            (f"bytes=10-{len(video) * 2}", 10, len(video) - 1),
        ):
            part = await user.get(path, Range=header)
            assert part.status == 206, header
            assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(video)}", header
            assert await part.read() == video[first : last + 1], header
        for header in (f"bytes={len(video)}-", "bytes=5-2", "bytes=-0", f"bytes={HUGE}-"):
            refused = await user.get(path, Range=header)
            assert refused.status == 416 and refused.headers["Content-Range"] == f"bytes */{len(video)}", header
        image = await user.get(f"/api/jobs/{job_id}/input", Range="bytes=0-7")
        assert image.status == 206 and await image.read() == SAMPLE_IMAGE.read_bytes()[:8]
        assert image.headers["Content-Range"] == f"bytes 0-7/{len(SAMPLE_IMAGE.read_bytes())}"
        # another user: the same answer as for a job that does not exist
        stranger = await p.sign_in(15)
        for suffix in ("", "/video.mp4", "/input"):
            response = await stranger.get(f"/api/jobs/{job_id}{suffix}", Range="bytes=0-1")
            assert response.status == 404 and await error_of(response) == "There is no such job of yours."
        async with p.server.readers() as session:
            from jobs.models import Job

            row = await session.get(Job, job_id)
            assert row is not None and row.status == JobStatus.SUCCEEDED


async def test_one_access_log_line_per_request_with_the_client_behind_a_trusted_proxy(
    sqlite_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="web.access")
    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
    async with page(sqlite_url, tmp_path) as p:  # no trusted proxy: the headers are not believed
        user = await p.sign_in(16)
        caplog.clear()
        await user.get("/api/quota", **forwarded)
        (line,) = [r.getMessage() for r in caplog.records if r.name == "web.access"]
        assert line.startswith("GET /api/quota 200 ") and "ms user=16 client=127.0.0.1" in line, line
    async with page(sqlite_url, tmp_path, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),)) as p:
        caplog.clear()
        await p.client.get("/api/quota", headers=forwarded)
        await p.client.get("/api/quota", headers={"Forwarded": 'for="[2001:db8::1]:4711";proto=https'})
        await p.client.get("/api/quota", headers={"X-Real-IP": "192.0.2.44"})
        lines = [r.getMessage() for r in caplog.records if r.name == "web.access"]
        assert [line.split(" client=")[1] for line in lines] == ["203.0.113.9", "2001:db8::1", "192.0.2.44"], lines
        assert all(" 401 " in line and "user=-" in line for line in lines), lines


async def test_a_page_job_belongs_to_the_server_of_the_sign_in_link(sqlite_url: str, tmp_path: Path) -> None:
    from jobs.control import ban_from_guild, pause_guild, update_guild_settings
    from jobs.models import Job

    server_a, server_b = 501, 502
    async with page(sqlite_url, tmp_path) as p:
        in_a, in_dm = await p.sign_in(20, guild_id=server_a), await p.sign_in(20)
        async with p.server.sessions.begin() as session:
            await pause_guild(session, server_a, by=OPERATOR_ID, reason="maintenance")
            await update_guild_settings(session, server_a, by=OPERATOR_ID, max_resolution="512p")
        # paused in A: accepted and held (queued), carrying A
        status, held = await in_a.create_job()
        assert status == 201 and held["status"] == "queued", held
        async with p.server.sessions.begin() as session:
            job = await session.get(Job, held["id"])
            assert job is not None and job.guild_id == server_a
            assert await claim_next_job(session, "w1", lease_seconds=60) is None  # A's pause holds it
        # A's resolution cap refuses 1024p there; a link from a DM carries no server, so A's rules do not apply
        status, refused = await in_a.create_job(resolution="1024p")
        assert status == 400 and "512p" in refused["error"], refused
        status, from_dm = await in_dm.create_job(resolution="1024p")
        assert status == 201, from_dm
        # A's ban ends the sessions of A's links at once and refuses new ones; a session from B's link goes on
        banned_in_a, in_b = await p.sign_in(21, guild_id=server_a), await p.sign_in(21, guild_id=server_b)
        async with p.server.sessions.begin() as session:
            await ban_from_guild(session, server_a, 21, reason="spam in A", by=OPERATOR_ID)
        assert (await banned_in_a.get("/api/me")).status == 401
        status, _ = await banned_in_a.create_job()
        assert status == 401
        status, ok = await in_b.create_job()
        assert status == 201, ok
        async with p.server.sessions.begin() as session:
            token = await create_link(session, 21, guild_id=server_a)
        response = await p.client.post("/signin", data={"token": token}, allow_redirects=False)
        assert response.status == 403 and "in this server: spam in A" in await response.text()


async def test_a_ban_ends_sessions_at_once_and_the_user_ends_their_own_everywhere(
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    from jobs.control import ban_and_settle

    async with page(sqlite_url, tmp_path) as p:
        phone, laptop, other = await p.sign_in(30), await p.sign_in(30, guild_id=501), await p.sign_in(31)
        # sign out everywhere, from one browser: every session of that user ends, no one else's
        response = await phone.post("/api/signout?everywhere=1")
        assert response.status == 200 and (await response.json())["sessions_ended"] == 2
        assert (await phone.get("/api/me")).status == 401 and (await laptop.get("/api/me")).status == 401
        assert (await other.get("/api/me")).status == 200
        # a bot-wide ban: the user's open page gets 401 on its next request, and a new link is refused
        async with p.server.sessions.begin() as session:
            await ban_and_settle(session, 31, reason="abuse", by=OPERATOR_ID)
        response = await other.get("/api/quota")
        assert response.status == 401 and "Sign in first" in await error_of(response)
        async with p.server.sessions.begin() as session:
            token = await create_link(session, 31)
        response = await p.client.post("/signin", data={"token": token}, allow_redirects=False)
        assert response.status == 403 and "not allowed to make videos with this bot: abuse" in await response.text()


async def test_the_console_lists_sessions_and_ends_one(sqlite_url: str, tmp_path: Path) -> None:
    async with page(sqlite_url, tmp_path) as p:
        operator, member = await p.sign_in(OPERATOR_ID), await p.sign_in(32, guild_id=501, role_ids=[77])
        listed = (await (await operator.get("/api/console")).json())["sessions"]
        mine = [s for s in listed if s["user_id"] == "32"]
        assert len(mine) == 1 and mine[0]["guild_id"] == "501" and mine[0]["role_ids"] == ["77"], listed
        assert (await member.post(f"/api/console/sessions/{mine[0]['id']}/end")).status == 403  # not the operator
        response = await operator.post(f"/api/console/sessions/{mine[0]['id']}/end")
        assert response.status == 200 and (await response.json())["user_id"] == "32"
        assert (await member.get("/api/me")).status == 401
        assert (await operator.post(f"/api/console/sessions/{mine[0]['id']}/end")).status == 404  # ended already
        assert (await operator.post("/api/console/sessions/not-a-session/end")).status == 404
        audit = (await (await operator.get("/api/console")).json())["audit"]
        assert any(a["action"] == "end_web_session" and a["target_user_id"] == "32" for a in audit), audit


async def test_role_derived_rights_lapse_when_the_roles_are_not_re_read(sqlite_url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from jobs.models import utcnow
    from jobs.web_sessions import record_roles

    operator_role = 777
    async with page(sqlite_url, tmp_path, operator_role_ids=frozenset({operator_role}), role_recheck_seconds=60.0) as p:
        member = await p.sign_in(33, guild_id=501, role_ids=[operator_role])
        assert (await member.get("/api/console")).status == 200  # operator by role, read with the link
        # the bot re-read them just within two periods: still valid
        async with p.server.sessions.begin() as session:
            await record_roles(session, 33, 501, [operator_role], now=utcnow() - timedelta(seconds=100))
        assert (await member.get("/api/console")).status == 200
        # not re-read for longer than two periods (the bot disconnected, Discord erred): the rights lapse
        async with p.server.sessions.begin() as session:
            await record_roles(session, 33, 501, [operator_role], now=utcnow() - timedelta(seconds=121))
        assert (await member.get("/api/console")).status == 403
        assert (await member.get("/api/me")).status == 200  # still signed in as themself
        # re-read now, without the role (removed in Discord): no console
        async with p.server.sessions.begin() as session:
            await record_roles(session, 33, 501, [])
        assert (await member.get("/api/console")).status == 403
        async with p.server.sessions.begin() as session:
            await record_roles(session, 33, 501, [operator_role])
        assert (await member.get("/api/console")).status == 200
