"""The web page in a real headless Chromium, against the app started as ``scripts/run-bot`` without a Discord token
(the page and its embedded worker on the tiny model). The browser signs in with the operator's link the app printed
at start (no operator id is configured: the local operator account); the plain HTTP helpers with one from
``python -m bot web-link``.

One app for the module, and the run's one browser (tests/web/conftest.py). The flow: pause from the console, upload
the sample image, choose quick, Generate, see the queue position, resume, see the denoising steps change, play the
finished video and decode the MP4 the <video> element loaded; /healthz and /metrics scraped around it; Vary it (a
changed parameter, the same image), Re-roll and Same again. Also a refused image, a forged cross-site POST, the
gallery's delete, screenshots for the README.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web as aioweb
from sqlalchemy import func, select

from generator.video import probe_mp4
from jobs.models import Job, QueueState
from tests.bot.harness import REPO_ROOT
from tests.web.webharness import (
    SAMPLE_IMAGE,
    SCREENSHOTS,
    WebApp,
    by_id,
    free_port,
    http,
    metric,
    save_screenshot,
    sign_in_browser,
    started_app,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

VIDEO_WAIT_S = 300.0  # one small tiny-model job on a busy CPU
COPY_WAIT_S = 10.0  # the delivery pass runs once a second
FAST = {"resolution": "256p", "steps": "10"}  # quick keeps 8 frames at 8 fps; fewer pixels and steps for the CPU


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApp]:
    # started as an admin starts it the first time: scripts/run-bot, no DISCORD_TOKEN
    with started_app(
        tmp_path_factory.mktemp("webapp"),
        {"I2V_FAULT_SLEEP_PER_STEP": "0.3"},
        launcher=(str(REPO_ROOT / "scripts" / "run-bot"),),
    ) as app:
        yield app


@pytest.fixture(scope="module", autouse=True)
def signed_in(app: WebApp, browser: Any) -> None:
    """The browser signs in with the link the app printed at start; before that the page shows only the prompt."""
    browser.get(app.url + "/")
    wait_for(browser, lambda b: by_id(b, "signin-needed").is_displayed(), what="the sign-in prompt")
    assert not by_id(browser, "app").is_displayed() and "Sign in first" in by_id(browser, "signin-message").text
    link = app.printed_link()
    assert link.startswith(app.url + "/signin?token=")  # WEB_HOST 127.0.0.1 and the bound port
    sign_in_browser(browser, link)
    assert "this machine's operator" in by_id(browser, "user").text and by_id(browser, "console-link").is_displayed()
    status, _, body = http(
        "POST",
        app.url + "/signin",
        data=f"token={link.split('token=')[1]}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 403 and b"already used" in body  # single use


def text_of(element_id: str) -> Any:
    return lambda b: by_id(b, element_id).text


def jobs_count(app: WebApp) -> int:
    async def count(session: Any) -> int:
        return int(await session.scalar(select(func.count(Job.id))))

    return app.store(count)


def is_paused(app: WebApp) -> bool:
    async def paused(session: Any) -> bool:
        return bool((await session.get(QueueState, 1)).paused)

    return app.store(paused)


def open_page(browser: Any, app: WebApp) -> None:
    browser.get(app.url + "/")
    wait_for(
        browser,
        lambda b: by_id(b, "app").is_displayed() and by_id(b, "resolution").get_attribute("value"),
        what="the form",
    )


def test_make_a_video_watch_it_and_play_it(app: WebApp, browser: Any) -> None:
    health = app.get_json("/healthz")
    assert health["status"] == "ok" and health["workers"], health
    before = http("GET", app.url + "/metrics")[2].decode()

    # the console (a second tab): pause, so the job is seen waiting in the queue
    page_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    console_tab = browser.current_window_handle
    browser.get(app.url + "/console")
    wait_for(browser, lambda b: by_id(b, "queue-state").get_attribute("data-paused") == "false", what="the console")
    by_id(browser, "pause-reason").send_keys("browser test")
    by_id(browser, "pause").click()
    wait_for(browser, lambda b: by_id(b, "queue-state").get_attribute("data-paused") == "true", what="pause")
    assert is_paused(app)

    browser.switch_to.window(page_tab)
    open_page(browser, app)
    # the form's ranges and defaults come from generator.model_spaces through /api/options: the default model's
    options = app.get_json("/api/options")
    (default,) = [m for m in options["models"] if m["key"] == options["default_model"]]
    low, high = default["frames"]
    assert (
        (by_id(browser, "frames").get_attribute("min"), by_id(browser, "frames").get_attribute("max"))
        == (str(low), str(high))
        == ("8", "32")
    )
    assert by_id(browser, "steps").get_attribute("value") == "50"  # the standard preset by default
    by_id(browser, "image").send_keys(str(SAMPLE_IMAGE))
    wait_for(browser, lambda b: "Image accepted: 640×384" in by_id(b, "image-message").text, what="the image check")
    assert by_id(browser, "preview").is_displayed()
    by_id(browser, "prompt").send_keys("the clouds drift slowly over the hills")
    browser.find_element("css selector", '.preset[data-preset="quick"]').click()
    assert (
        by_id(browser, "frames").get_attribute("value"),
        by_id(browser, "fps").get_attribute("value"),
        by_id(browser, "steps").get_attribute("value"),
    ) == ("8", "8", "30")
    by_id(browser, "advanced").click()
    by_id(browser, "random-seed").click()
    seed = int(by_id(browser, "seed").get_attribute("value"))
    assert 0 <= seed < 2**32
    save_screenshot(browser, SCREENSHOTS / "web-form.png")
    for name, value in FAST.items():  # fewer pixels and steps than quick, for a CPU; frames and fps stay quick's
        field = by_id(browser, name)
        if name == "resolution":
            browser.execute_script(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", field, value
            )
        else:
            field.clear()
            field.send_keys(value)
    by_id(browser, "generate").click()

    queued = wait_for(
        browser, lambda b: "Queued: position 1" in (t := by_id(b, "job-status").text) and t, what="the queue position"
    )
    assert "ready in about" in queued

    browser.switch_to.window(console_tab)
    wait_for(browser, lambda b: "queued #1" in by_id(b, "queue").text, what="the job in the console's queue")
    by_id(browser, "resume").click()
    wait_for(browser, lambda b: by_id(b, "queue-state").get_attribute("data-paused") == "false", what="resume")
    assert not is_paused(app)
    audit = wait_for(
        browser,
        lambda b: {r.get_attribute("data-action") for r in b.find_elements("css selector", "#audit tr")} or None,
    )
    assert {"pause_queue", "resume_queue"} <= audit

    browser.switch_to.window(page_tab)
    steps: set[int] = set()

    def progress(b: Any) -> bool:
        status = by_id(b, "job-status")
        if status.get_attribute("data-phase") == "denoising":
            steps.add(int(status.get_attribute("data-step")))
            assert status.text.startswith("Step ") and "/10 (denoising)" in status.text
        return status.get_attribute("data-status") == "succeeded"

    wait_for(browser, progress, timeout=VIDEO_WAIT_S, what="the video")
    assert len(steps) >= 2, f"progress never changed while denoising: {steps}"

    video = wait_for(
        browser,
        lambda b: b.execute_script(
            "const v = document.getElementById('result-video');"
            "return v.readyState >= 2 && v.duration > 0 ? {src: v.currentSrc, duration: v.duration, "
            "width: v.videoWidth, height: v.videoHeight} : null;"
        ),
        what="the video playing",
    )
    assert (video["width"], video["height"]) == (448, 256)
    assert abs(video["duration"] - 1.0) < 0.2, video  # 8 frames at 8 fps
    status, headers, mp4 = app.call("GET", video["src"])
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    info = probe_bytes(mp4, app.root)
    assert (info.frames, info.fps, info.width, info.height) == (8, 8.0, 448, 256)
    params = by_id(browser, "result-params").text
    assert f"seed {seed}" in params and "8 frames" in params and "quick" in params
    name = by_id(browser, "output-name").text
    job_id = int(name.rsplit("_", 1)[1].removesuffix(".mp4"))
    assert name.startswith("video_") and by_id(browser, "download").get_attribute("download") == name
    status, headers, body = app.call("GET", by_id(browser, "download").get_attribute("href"))
    assert status == 200 and body == mp4 and name in headers["Content-Disposition"]
    # the seed's output folder, under its name: written by the delivery pass (once a second) that marks the job
    # delivered, which may come just after the page has the video from the store
    copy = app.root / "outputs" / name
    wait_until_true(copy.exists, COPY_WAIT_S, f"the disk copy {copy}")
    assert copy.read_bytes() == mp4
    browser.execute_script("document.getElementById('result').scrollIntoView()")
    save_screenshot(browser, SCREENSHOTS / "web-video.png")
    assert "GPU time left" in by_id(browser, "quota").text

    # the gallery shows it, newest first, and Delete removes it
    wait_for(
        browser,
        lambda b: b.find_elements("css selector", f'#gallery-items figure[data-job="{job_id}"]'),
        what="the gallery entry",
    )
    after = http("GET", app.url + "/metrics")[2].decode()
    assert (
        metric(after, 'i2v_jobs_finished_total{outcome="succeeded"}')
        == metric(before, 'i2v_jobs_finished_total{outcome="succeeded"}') + 1
    )
    assert metric(after, 'i2v_job_generation_seconds_count{preset="quick"}') >= 1
    assert metric(after, "i2v_gpu_seconds_total") > metric(before, "i2v_gpu_seconds_total")
    assert metric(after, 'i2v_workers{state="idle"}') + metric(after, 'i2v_workers{state="busy"}') >= 1

    vary_the_video(app, browser, job_id)
    again_buttons(app, browser)

    browser.find_element("css selector", f'#gallery-items figure[data-job="{job_id}"] button.delete').click()
    wait_for(
        browser,
        lambda b: not b.find_elements("css selector", f'#gallery-items figure[data-job="{job_id}"]'),
        what="the delete",
    )
    assert app.call("GET", f"/api/jobs/{job_id}/video.mp4")[0] == 404


def set_field(browser: Any, element_id: str, value: str) -> None:
    field = by_id(browser, element_id)
    field.clear()
    field.send_keys(value)


def shown_job(browser: Any) -> int:
    return int(by_id(browser, "job-title").text.removeprefix("Job #"))


def vary_the_video(app: WebApp, browser: Any, parent_id: int) -> None:
    """Vary: the form takes the finished job's parameters and image; change the steps and the prompt, Generate:
    the new job runs on the same stored image with the change, and the page shows it."""
    parent = app.get_json(f"/api/jobs/{parent_id}")
    by_id(browser, "vary").click()
    wait_for(browser, lambda b: f"variation of job #{parent_id}" in by_id(b, "variant-of").text, what="Vary's form")
    assert by_id(browser, "preview").get_attribute("src").endswith(f"/api/jobs/{parent_id}/input")
    assert by_id(browser, "steps").get_attribute("value") == "10"  # the parent's, not the preset's 30
    assert by_id(browser, "seed").get_attribute("value") == ""  # Vary draws a new seed unless one is given
    set_field(browser, "steps", "12")
    set_field(browser, "prompt", "the clouds drift slowly over the hills at dusk")
    by_id(browser, "generate").click()
    wait_for(browser, lambda b: shown_job(b) != parent_id, what="the variation queued")
    child_id = shown_job(browser)
    wait_for(
        browser,
        lambda b: by_id(b, "job-status").get_attribute("data-status") == "succeeded",
        timeout=VIDEO_WAIT_S,
        what="the variation's video",
    )
    shown = wait_for(
        browser,
        lambda b: by_id(b, "output-name").text.endswith(f"_{child_id}.mp4") and by_id(b, "result-params").text,
        what="the variation's parameters",
    )
    assert "at dusk" in shown and "12 steps" in shown and "8 frames" in shown and "quick" in shown, shown
    child = app.get_json(f"/api/jobs/{child_id}")
    changed = {k for k in parent["params"] if child["params"][k] != parent["params"][k]}
    assert changed <= {"prompt", "steps", "seed"} and {"prompt", "steps"} <= changed, (parent, child)
    assert (child["params"]["width"], child["params"]["height"]) == (448, 256)
    parent_image = app.call("GET", f"/api/jobs/{parent_id}/input")[2]
    assert app.call("GET", f"/api/jobs/{child_id}/input")[2] == parent_image == SAMPLE_IMAGE.read_bytes()

    async def lineage(session: Any) -> tuple[Any, ...]:
        rows = {j.id: j for j in (await session.scalars(select(Job).where(Job.id.in_([parent_id, child_id]))))}
        return rows[child_id].parent_job_id, rows[child_id].input_sha256 == rows[parent_id].input_sha256

    assert app.store(lineage) == (parent_id, True)


def again_buttons(app: WebApp, browser: Any) -> None:
    """Re-roll (a new seed) on the shown video, run to the end; then Same again (the same seed) on that one while
    the queue is paused, cancelled from the page: each is a new job of the shown one's image and parameters."""

    def press(button: str) -> tuple[Any, Any]:
        before = app.get_json(f"/api/jobs/{shown_job(browser)}")
        by_id(browser, button).click()
        wait_for(browser, lambda b: shown_job(b) != before["id"], what=f"{button} queued")
        new = app.get_json(f"/api/jobs/{shown_job(browser)}")
        rest = {k: v for k, v in new["params"].items() if k != "seed"}
        assert rest == {k: v for k, v in before["params"].items() if k != "seed"}, (button, before, new)
        assert new["input_url"] and app.call("GET", new["input_url"])[2] == SAMPLE_IMAGE.read_bytes()
        return before, new

    _, rerolled = press("reroll")
    wait_for(
        browser,
        lambda b: by_id(b, "job-status").get_attribute("data-status") == "succeeded",
        timeout=VIDEO_WAIT_S,
        what="the re-roll's video",
    )
    wait_for(
        browser,
        lambda b: f"seed {rerolled['params']['seed']}" in by_id(b, "result-params").text,
        what="the re-roll's parameters",
    )
    assert app.call("POST", "/api/console/pause", data=b"{}")[0] == 200
    try:
        before, same = press("same")
        assert same["params"] == before["params"]
        wait_for(browser, lambda b: "Queued: position" in by_id(b, "job-status").text, what="Same again queued")
        by_id(browser, "cancel").click()
        wait_for(
            browser, lambda b: f"Cancelled job #{same['id']}" in by_id(b, "form-message").text, what="the page's Cancel"
        )
        assert app.get_json(f"/api/jobs/{same['id']}")["status"] == "cancelled"
    finally:
        assert app.call("POST", "/api/console/resume", data=b"{}")[0] == 200


def wait_until_true(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not appear within {timeout}s"
        time.sleep(0.1)


def probe_bytes(mp4: bytes, root: Path) -> Any:
    path = root / "downloaded.mp4"
    path.write_bytes(mp4)
    return probe_mp4(path)


def test_a_refused_image_shows_its_message(app: WebApp, browser: Any, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"this is not a picture at all")
    before = jobs_count(app)
    open_page(browser, app)
    by_id(browser, "image").send_keys(str(fake))
    wait_for(
        browser,
        lambda b: "That file is not an image I can read" in by_id(b, "image-message").text,
        what="the image check's message",
    )
    by_id(browser, "prompt").send_keys("anything")
    by_id(browser, "generate").click()
    wait_for(
        browser,
        lambda b: "That file is not an image I can read" in by_id(b, "form-message").text,
        what="the refusal on Generate",
    )
    assert jobs_count(app) == before


def test_a_forged_cross_site_post_is_refused(app: WebApp, browser: Any) -> None:
    """Another site's page (another origin) posts a form to the console's pause: refused, nothing changes. The
    browser sends no session cookie with it (SameSite=Strict), so it is not even signed in."""
    import asyncio
    import threading

    port = free_port()
    attack = (
        f'<form id="f" method="post" action="{app.url}/api/console/pause" enctype="text/plain">'
        '<input name="reason" value="forged"></form><script>document.getElementById("f").submit()</script>'
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def evil(request: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(text=attack, content_type="text/html")

    async def serve() -> aioweb.AppRunner:
        evil_app = aioweb.Application()
        evil_app.router.add_get("/", evil)
        runner = aioweb.AppRunner(evil_app)
        await runner.setup()
        await aioweb.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run_until_complete(serve())

    def run_loop() -> None:
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    ready.wait()
    try:
        assert not is_paused(app)
        browser.get(f"http://localhost:{port}/")  # localhost:other-port: a different origin and site name
        answer = wait_for(
            browser,
            lambda b: b.current_url.startswith(app.url) and b.find_element("tag name", "body").text,
            what="the forged post's answer",
        )
        assert "Sign in first" in json.loads(answer)["error"]
        assert not is_paused(app)
        # the same without a browser, with the operator's session: no token, a wrong one, or a foreign Origin
        # with the right token, is refused
        for headers in (
            {"X-CSRF-Token": ""},
            {"X-CSRF-Token": "0" * 64},
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
        ):
            status, _, body = app.call("POST", "/api/console/pause", data=b"{}", headers=headers)
            assert status == 403 and b"did not come from the i2v page" in body, (headers, status, body)
        assert not is_paused(app)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop) if loop.is_running() else loop.run_until_complete(
            runner.cleanup()
        )
        loop.close()


API_PATHS = (
    "/api/me",
    "/api/options",
    "/api/quota",
    "/api/gallery",
    "/api/console",
    "/api/jobs/1",
    "/api/jobs/1/video.mp4",
    "/api/jobs/1/input",
    "/api/jobs/1/events",
    "/api/console/users/1",
)
FORWARDED = (
    {"X-Forwarded-For": "127.0.0.1"},
    {"Forwarded": "for=127.0.0.1;proto=https;host=localhost"},
    {"X-Real-IP": "127.0.0.1"},
    {"X-Forwarded-For": "::1", "X-Real-IP": "::1", "Host": "localhost"},
)


def test_no_address_and_no_header_is_trusted(app: WebApp) -> None:
    """The page listens on 127.0.0.1, yet a request without a session gets 401 and no user data, whatever it
    claims about its address (forwarded headers) or host; a POST changes nothing."""
    for headers in ({}, *FORWARDED):
        for path in API_PATHS:
            status, _, body = http("GET", app.url + path, headers=headers)
            assert status == 401 and json.loads(body) == {"error": json.loads(body)["error"]}, (path, headers, body)
            assert "Sign in first" in json.loads(body)["error"]
        for path in ("/api/console/pause", "/api/jobs", "/api/signout", "/api/console/users/5/ban"):
            status, _, body = http("POST", app.url + path, data=b"{}", headers=headers)
            assert status == 401 and b"Sign in first" in body, (path, headers, status)
    assert not is_paused(app)
    # the pages themselves show only the sign-in prompt (their data comes from the API)
    status, _, html = http("GET", app.url + "/", headers=FORWARDED[0])
    assert status == 200 and b'id="signin-needed" hidden' in html and b'id="app" hidden' in html
    # monitoring stays open
    assert http("GET", app.url + "/healthz")[0] == 200 and http("GET", app.url + "/metrics")[0] == 200
