"""The page behind Debian's nginx terminating TLS, configured as docs/deploy.md says (``tests/web/proxy.py``), with
WEB_PUBLIC_URL set to the proxy's https:// origin and WEB_TRUSTED_PROXIES to its address. Through the proxy, in
headless Chromium: without a session the page shows only the sign-in prompt and every API answers 401; the
operator signs in with the link the app printed (it names the public origin; the cookie is Secure), makes a video
and plays it (the <video> loads it with Range requests, 206 through nginx), cancels a second job, and signs out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.proxy import Nginx, start_nginx
from tests.web.webharness import (
    SAMPLE_IMAGE,
    WebApp,
    by_id,
    free_port,
    http,
    sign_in_browser,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

VIDEO_WAIT_S = 300.0  # one small tiny-model job on a busy CPU
API_PATHS = ("/api/me", "/api/quota", "/api/gallery", "/api/console", "/api/jobs/1", "/api/jobs/1/video.mp4")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebApp, Nginx]]:
    root = tmp_path_factory.mktemp("proxied")
    port = free_port()
    app = WebApp(
        root,
        extra_env={
            "WEB_PUBLIC_URL": f"https://localhost:{port}",
            "WEB_TRUSTED_PROXIES": "127.0.0.1",
            "I2V_FAULT_SLEEP_PER_STEP": "0.3",
        },
    )
    nginx = start_nginx(root / "nginx", port, app.port)
    try:
        app.start()
        yield app, nginx
    finally:
        code = app.stop()
        nginx.stop()
        assert code == 0, f"app exited with {code}:\n{app.tail()}"


def fill_form(browser: Any, public: str, prompt: str, steps: str) -> None:
    browser.get(public + "/")
    wait_for(
        browser,
        lambda b: by_id(b, "app").is_displayed() and by_id(b, "resolution").get_attribute("value"),
        what="the form",
    )
    by_id(browser, "image").send_keys(str(SAMPLE_IMAGE))
    wait_for(browser, lambda b: "Image accepted" in by_id(b, "image-message").text, what="the image check")
    by_id(browser, "prompt").send_keys(prompt)
    browser.find_element("css selector", '.preset[data-preset="quick"]').click()
    browser.execute_script(
        "arguments[0].value = '256p'; arguments[0].dispatchEvent(new Event('input'))", by_id(browser, "resolution")
    )
    by_id(browser, "advanced").click()
    by_id(browser, "steps").clear()
    by_id(browser, "steps").send_keys(steps)
    by_id(browser, "generate").click()


def test_through_nginx_sign_in_generate_play_cancel_and_sign_out(proxied: tuple[WebApp, Nginx], browser: Any) -> None:
    app, nginx = proxied
    public = nginx.url
    # no session: only the sign-in prompt, and every API answers 401 with no user data, forwarded headers or not
    browser.get(public + "/")
    wait_for(browser, lambda b: by_id(b, "signin-needed").is_displayed(), what="the sign-in prompt")
    assert not by_id(browser, "app").is_displayed()
    for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "::1"}, {"Forwarded": "for=127.0.0.1"}):
        for path in API_PATHS:
            status, _, body = http("GET", public + path, headers=headers)
            assert status == 401 and list(json.loads(body)) == ["error"], (path, headers, status, body)

    link = app.printed_link()
    assert link.startswith(public + "/signin?token="), link  # the public origin, not the listening address
    sign_in_browser(browser, link)
    assert browser.current_url == public + "/"  # redirected to the public origin
    cookie = browser.get_cookie("i2v_session")
    assert cookie and cookie["secure"] and cookie["httpOnly"], cookie
    session = {"Cookie": f"i2v_session={cookie['value']}"}

    # generate through the proxy and play it
    fill_form(browser, public, "waves roll in", "10")
    wait_for(
        browser,
        lambda b: by_id(b, "job-status").get_attribute("data-status") == "succeeded",
        timeout=VIDEO_WAIT_S,
        what="the video",
    )
    video = wait_for(
        browser,
        lambda b: b.execute_script(
            "const v = document.getElementById('result-video');"
            "return v.readyState >= 2 && v.duration > 0 ? {src: v.currentSrc, duration: v.duration} : null;"
        ),
        what="the video playing",
    )
    assert video["src"].startswith(public + "/api/jobs/"), video
    status, headers, whole = http("GET", video["src"], headers=session)
    assert status == 200 and whole[4:8] == b"ftyp"
    status, headers, part = http("GET", video["src"], headers={**session, "Range": "bytes=100-199"})
    assert status == 206 and headers["Content-Range"] == f"bytes 100-199/{len(whole)}" and part == whole[100:200]
    status, headers, _ = http("GET", video["src"], headers={**session, "Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    path = video["src"].removeprefix(public).split("?")[0]
    assert any(path in line and '" 206 ' in line for line in nginx.log().splitlines()), (
        "the browser's <video> made no Range request through nginx"
    )

    # a second job, cancelled from the page while it runs or waits
    fill_form(browser, public, "a slow one", "50")
    wait_for(browser, lambda b: by_id(b, "cancel").is_displayed(), what="the cancel button")
    by_id(browser, "cancel").click()
    wait_for(
        browser,
        lambda b: by_id(b, "job-status").get_attribute("data-status") == "cancelled",
        timeout=VIDEO_WAIT_S,
        what="the cancel",
    )

    # the page's POSTs passed the Origin check through the proxy; the same session and token sent straight to the
    # app's own address, with that address as the Origin, is refused (the page's origin is WEB_PUBLIC_URL)
    csrf = json.loads(http("GET", public + "/api/me", headers=session)[2])["csrf_token"]
    status, _, body = http(
        "POST",
        app.url + "/api/jobs/1/again?mode=same",
        data=b"",
        headers={**session, "X-CSRF-Token": csrf, "Origin": app.url},
    )
    assert status == 403 and b"did not come from the i2v page" in body, (status, body)

    # the console lists the signed-in sessions, this browser's among them, each with End
    browser.get(public + "/console")
    rows = wait_for(
        browser, lambda b: b.find_elements("css selector", "#sessions tr[data-session]"), what="the console's sessions"
    )
    assert len(rows) >= 1 and all(row.find_elements("css selector", "button.end-session") for row in rows)

    # sign out: the session ends, the page shows the prompt again
    browser.get(public + "/")
    wait_for(browser, lambda b: by_id(b, "signout").is_displayed(), what="the page")
    by_id(browser, "signout").click()
    wait_for(browser, lambda b: by_id(b, "signin-needed").is_displayed(), what="signed out")
    status, _, _ = http("GET", public + "/api/me", headers=session)
    assert status == 401
    # the app's access log names the client nginx forwarded (trusted), one line per request
    log = app.log_path.read_text(errors="replace")
    assert "POST /api/signout 200 " in log and "client=127.0.0.1" in log
