"""The page listening on every address (WEB_HOST=0.0.0.0): nothing without sign-in, a sign-in link works once,
sign-out ends the session, and each signed-in user sees and changes only their own jobs.

The app runs with WORKER=external and no worker, so jobs stay queued (what these tests need). Links are made by
``jobs.web_sessions.create_link``, the function the bot's /web command calls (that command is tested through the
fake Discord in tests/bot/test_web_with_discord.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jobs.web_sessions import create_link
from tests.web.webharness import SAMPLE_IMAGE, WebApp, by_id, http, sign_in_http, started_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

OPERATOR_ID = 9001
BOUNDARY = "i2vtestboundary"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApp]:
    env = {
        "WEB_HOST": "0.0.0.0",
        "WORKER": "external",
        "OPERATOR_USER_IDS": str(OPERATOR_ID),
        "PROMPT_BLOCKLIST": "gore, zombie horde",
    }
    # no worker: /healthz says 503, which is the point of external mode
    with started_app(tmp_path_factory.mktemp("remote"), env, wait_healthy=False) as app:
        yield app


def link_for(app: WebApp, user_id: int) -> str:
    return app.store(create_link, user_id, write=True)


def sign_in(app: WebApp, user_id: int) -> tuple[str, str]:
    """Sign ``user_id`` in over plain HTTP with a link made as /web makes it: (cookie header, CSRF token)."""
    cookie, csrf = sign_in_http(f"{app.url}/signin?token={link_for(app, user_id)}")
    assert json.loads(http("GET", app.url + "/api/me", headers={"Cookie": cookie})[2])["user_id"] == str(user_id)
    return cookie, csrf


def multipart(fields: dict[str, str], image: bytes | None) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    body = "".join(parts).encode()
    if image is not None:
        body += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="s.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + image
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()


def post_job(app: WebApp, cookie: str, csrf: str, **fields: str) -> tuple[int, Any]:
    body = multipart(
        {"prompt": "a boat", "preset": "quick", "resolution": "256p", "steps": "10", **fields},
        SAMPLE_IMAGE.read_bytes(),
    )
    status, _, answer = http(
        "POST",
        app.url + "/api/jobs",
        data=body,
        headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    return status, json.loads(answer)


def test_a_remote_page_without_sign_in_refuses(remote: WebApp, browser: Any) -> None:
    browser.get(remote.url + "/")
    wait_for(browser, lambda b: by_id(b, "signin-needed").is_displayed(), what="the sign-in notice")
    assert "/web" in by_id(browser, "signin-message").text and not by_id(browser, "app").is_displayed()
    for path in ("/api/quota", "/api/gallery", "/api/console", "/api/jobs/1"):
        status, _, body = http("GET", remote.url + path)
        assert status == 401 and b"Sign in first" in body, (path, status)
    body = multipart({"prompt": "x"}, SAMPLE_IMAGE.read_bytes())
    status, _, _ = http(
        "POST",
        remote.url + "/api/jobs",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert status == 401
    assert remote.store(_count_jobs) == 0
    browser.get(remote.url + "/console")
    wait_for(browser, lambda b: "Sign in first" in by_id(b, "console-message").text, what="the console refusing")


async def _count_jobs(session: Any) -> int:
    from sqlalchemy import func, select

    from jobs.models import Job

    return int(await session.scalar(select(func.count(Job.id))))


def test_a_sign_in_link_works_once_and_sign_out_ends_the_session(remote: WebApp, browser: Any) -> None:
    link = f"{remote.url}/signin?token={link_for(remote, 4242)}"
    browser.get(link)
    by_id(browser, "signin").click()
    wait_for(browser, lambda b: "Signed in as Discord user 4242" in by_id(b, "user").text, what="signed in")
    assert by_id(browser, "app").is_displayed() and not by_id(browser, "console-link").is_displayed()
    cookie = browser.get_cookie("i2v_session")
    assert cookie and cookie["httpOnly"]

    browser.get(link)  # the same link again
    by_id(browser, "signin").click()
    wait_for(browser, lambda b: "already used or has expired" in by_id(b, "message").text, what="the used link")

    browser.get(remote.url + "/")  # still signed in from the first time
    wait_for(browser, lambda b: "Signed in as Discord user 4242" in by_id(b, "user").text, what="the session")
    by_id(browser, "signout").click()
    wait_for(browser, lambda b: by_id(b, "signin-needed").is_displayed(), what="signed out")
    status, _, body = http("GET", remote.url + "/api/me", headers={"Cookie": f"i2v_session={cookie['value']}"})
    assert status == 401 and b"Sign in first" in body


def test_users_see_and_change_only_their_own_jobs(remote: WebApp) -> None:
    alice, alice_csrf = sign_in(remote, 5001)
    bob, bob_csrf = sign_in(remote, 5002)
    status, job = post_job(remote, alice, alice_csrf)
    assert status == 201 and job["status"] == "queued", job
    path = f"{remote.url}/api/jobs/{job['id']}"
    assert http("GET", path, headers={"Cookie": alice})[0] == 200
    for method, suffix in (
        ("GET", ""),
        ("GET", "/video.mp4"),
        ("GET", "/input"),
        ("POST", "/cancel"),
        ("POST", "/delete"),
        ("POST", "/again?mode=reroll"),
    ):
        status, _, _ = http(
            method,
            path + suffix,
            data=b"" if method == "POST" else None,
            headers={"Cookie": bob, "X-CSRF-Token": bob_csrf},
        )
        assert status == 404, (method, suffix, status)
    # Bob's token with Alice's cookie is a forged request: refused
    assert http("POST", path + "/cancel", data=b"", headers={"Cookie": alice, "X-CSRF-Token": bob_csrf})[0] == 403
    assert json.loads(http("GET", path, headers={"Cookie": alice})[2])["status"] == "queued"
    # not the operator: no console; the operator's session gets it
    assert http("GET", remote.url + "/api/console", headers={"Cookie": bob})[0] == 403
    operator, _ = sign_in(remote, OPERATOR_ID)
    status, _, body = http("GET", remote.url + "/api/console", headers={"Cookie": operator})
    assert status == 200 and job["id"] in [entry["id"] for entry in json.loads(body)["queue"]]
    # Alice cancels her own
    status, _, body = http("POST", path + "/cancel", data=b"", headers={"Cookie": alice, "X-CSRF-Token": alice_csrf})
    assert status == 200 and json.loads(body)["outcome"] == "cancelled"


def test_an_upload_over_the_cap_is_refused_before_it_is_read(remote: WebApp) -> None:
    cookie, csrf = sign_in(remote, 5003)
    cap = json.loads(http("GET", remote.url + "/api/options", headers={"Cookie": cookie})[2])["max_upload_bytes"]
    body = multipart({"prompt": "big"}, b"\0" * (cap + 200_000))
    status, _, answer = http(
        "POST",
        remote.url + "/api/jobs",
        data=body,
        headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert status == 413 and b"too large" in answer, (status, answer[:200])


def post(app: WebApp, path: str, cookie: str, csrf: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body if body is not None else {}).encode()
    status, _, answer = http(
        "POST",
        app.url + path,
        data=data,
        headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    return status, json.loads(answer)


def test_re_roll_same_again_and_vary_reuse_the_stored_image(remote: WebApp) -> None:
    cookie, csrf = sign_in(remote, 5010)
    status, parent = post_job(remote, cookie, csrf)
    assert status == 201
    status, same = post(remote, f"/api/jobs/{parent['id']}/again?mode=same", cookie, csrf)
    assert status == 201 and same["params"] == parent["params"]
    status, reroll = post(remote, f"/api/jobs/{parent['id']}/again?mode=reroll", cookie, csrf)
    assert status == 201
    assert {k: v for k, v in reroll["params"].items() if k != "seed"} == {
        k: v for k, v in parent["params"].items() if k != "seed"
    }
    body = multipart(
        {
            "parent": str(parent["id"]),
            "prompt": "a boat, at night",
            "preset": "quick",
            "resolution": "256p",
            "steps": "12",
            "seed": "42",
        },
        None,
    )
    status, _, answer = http(
        "POST",
        remote.url + "/api/jobs",
        data=body,
        headers={"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    vary = json.loads(answer)
    assert status == 201, vary
    assert (vary["params"]["prompt"], vary["params"]["steps"], vary["params"]["seed"]) == ("a boat, at night", 12, 42)
    assert (vary["params"]["width"], vary["params"]["height"]) == (
        parent["params"]["width"],
        parent["params"]["height"],
    )

    async def inputs(session: Any) -> set[tuple[int | None, str]]:
        from sqlalchemy import select

        from jobs.models import Job

        rows = await session.execute(select(Job.parent_job_id, Job.input_sha256).where(Job.user_id == 5010))
        return {(p, sha) for p, sha in rows}

    rows = remote.store(inputs)
    assert len({sha for _, sha in rows}) == 1 and {p for p, _ in rows} == {None, parent["id"]}
    # the pending cap (QUOTA_MAX_PENDING=5) holds on the page as in Discord: four pending, one more fits
    assert post(remote, f"/api/jobs/{parent['id']}/again?mode=same", cookie, csrf)[0] == 201
    status, refused = post(remote, f"/api/jobs/{parent['id']}/again?mode=same", cookie, csrf)
    assert status == 400 and "5" in refused["error"], refused


def test_the_console_acts_through_the_operator_commands_operations(remote: WebApp) -> None:
    operator, op_csrf = sign_in(remote, OPERATOR_ID)
    user, user_csrf = sign_in(remote, 5020)
    status, job = post_job(remote, user, user_csrf)
    assert status == 201
    status, limits = post(
        remote, "/api/console/users/5020/limits", operator, op_csrf, {"daily_gpu_seconds": 1234, "max_pending": 3}
    )
    assert status == 200 and (limits["budget"], limits["max_pending"], limits["budget_source"]) == (1234, 3, "override")
    status, banned = post(remote, "/api/console/users/5020/ban", operator, op_csrf, {"reason": "testing bans"})
    assert status == 200 and banned["banned"] and banned["cancelled_job_ids"] == [job["id"]]
    status, refused = post_job(remote, user, user_csrf)
    assert status == 401 and "Sign in first" in refused["error"]  # the ban ended the user's session
    status, unbanned = post(remote, "/api/console/users/5020/unban", operator, op_csrf)
    assert status == 200 and not unbanned["banned"]
    user, user_csrf = sign_in(remote, 5020)
    status, again = post_job(remote, user, user_csrf)
    assert status == 201
    status, cancelled = post(remote, f"/api/console/jobs/{again['id']}/cancel", operator, op_csrf)
    assert status == 200 and cancelled["outcome"] == "cancelled"
    # a user who is not the operator cannot do any of it
    assert post(remote, "/api/console/users/5020/unban", user, user_csrf)[0] == 403
    audit = json.loads(http("GET", remote.url + "/api/console", headers={"Cookie": operator})[2])["audit"]
    mine = [(a["action"], a["scope"]) for a in audit if a["actor_id"] == str(OPERATOR_ID)]
    for expected in (
        ("set_user_limit", "bot"),
        ("ban_user", "bot"),
        ("ban_settle_jobs", "bot"),
        ("unban_user", "bot"),
        ("cancel_job", "bot"),
    ):
        assert expected in mine, (expected, mine)


def test_a_blocked_prompt_is_refused_by_the_page_with_no_job_and_audited(remote: WebApp) -> None:
    from jobs.safety import add_term

    cookie, csrf = sign_in(remote, 5030)
    for fields in ({"prompt": "GORE!"}, {"prompt": "a boat", "negative_prompt": "Zombie  horde"}):
        status, refused = post_job(remote, cookie, csrf, **fields)
        assert status == 400 and refused["error"] == (
            "This prompt was blocked: it contains a word or phrase on the bot's blocklist."
        ), refused
    status, parent = post_job(remote, cookie, csrf, prompt="a gorey boat")  # whole words only
    assert status == 201, parent
    remote.store(add_term, None, "boat", write=True, by=OPERATOR_ID)  # the operator's run-time list
    status, refused = post(remote, f"/api/jobs/{parent['id']}/again?mode=reroll", cookie, csrf)
    assert status == 400 and "blocked" in refused["error"]  # refused again in the enqueue transaction

    async def jobs_and_audit(session: Any) -> tuple[int, list[dict[str, str]]]:
        from sqlalchemy import func, select

        from jobs.models import AuditLog, Job

        count = await session.scalar(select(func.count(Job.id)).where(Job.user_id == 5030))
        rows = await session.scalars(
            select(AuditLog.detail).where(AuditLog.action == "prompt_blocked", AuditLog.actor_id == 5030)
        )
        return int(count), list(rows)

    count, audit = remote.store(jobs_and_audit)
    assert count == 1
    assert [(a["list"], a["term"], a["source"]) for a in audit] == [
        ("bot", "gore", "web"),
        ("bot", "zombie horde", "web"),
        ("bot", "boat", "web"),
    ]
