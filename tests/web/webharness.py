"""Test harness for the web page: the real ``python -m bot`` without a Discord token (the page and its embedded
worker on the tiny model), headless Chromium through Debian's chromedriver, and small HTTP helpers.

Every visitor signs in: ``started_app`` signs a plain HTTP client in as the operator with a link from
``python -m bot web-link`` (``WebApp.call`` and ``WebApp.get_json`` carry its cookie and CSRF token), and
``sign_in_browser`` signs the browser in with the link the app printed at start (``WebApp.printed_link``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bot.harness import REPO_ROOT, _pythonpath

APP_START_TIMEOUT_S = 120.0  # interpreter + migrations + the worker loading the tiny model on a busy machine
APP_STOP_TIMEOUT_S = 40.0
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
INSTALL_HINT = "install Debian's chromium and chromium-driver (scripts/test does it when run as root)"
PRINTED_LINK = re.compile(r"Operator sign-in: (\S+/signin\?token=[\w-]+)")
SAMPLE_IMAGE = REPO_ROOT / "generator" / "assets" / "sample.png"
# The browser test saves its screenshots here (ignored by git); I2V_SCREENSHOT_DIR=docs/images refreshes the README's.
SCREENSHOTS = Path(os.environ.get("I2V_SCREENSHOT_DIR") or REPO_ROOT / "test-artifacts" / "screenshots")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(candidates: tuple[str, ...], name: str) -> str:
    for path in (*candidates, shutil.which(name) or ""):
        if path and os.path.exists(path):
            return path
    raise AssertionError(f"no {name} found: {INSTALL_HINT}")


def make_browser() -> Any:
    """Headless Chromium (the system's) driven by its chromedriver; never downloads a browser."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = find_binary(CHROMIUM_CANDIDATES, "chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=900,1300",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-gpu",
        "--mute-audio",
        "--ignore-certificate-errors",
    ):  # the reverse proxy's test certificate is self-signed
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(find_binary(CHROMEDRIVER_CANDIDATES, "chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    return driver


WAIT_S = 30.0  # a page reacting to an action
SCREENSHOT_COLOURS = 96  # palette size of the README's screenshots (small PNGs)


def save_screenshot(driver: Any, path: Path) -> None:
    """Save what the browser shows as a palette PNG (a few tens of KiB, not a megabyte)."""
    import io

    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(colors=SCREENSHOT_COLOURS).save(path, optimize=True)


def http(
    method: str, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 20.0
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request (no cookies, no browser): status, headers, body."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=TEST_TLS) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _test_tls() -> ssl.SSLContext:
    """TLS to the tests' own reverse proxy, whose certificate is self-signed for localhost."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


TEST_TLS = _test_tls()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def printed_link(log_path: Path) -> str:
    """The operator's sign-in link an app printed (stdout and log, both in ``log_path``) at its latest start."""
    text = log_path.read_text(errors="replace")
    links = PRINTED_LINK.findall(text)
    assert links, "the app printed no operator sign-in link:\n" + "\n".join(text.splitlines()[-40:])
    return links[-1]


def sign_in_http(link: str) -> tuple[str, str]:
    """Redeem a sign-in link over plain HTTP as the page's form does: (cookie header, CSRF token), reading the
    cookie off the 303 (not followed)."""
    base, token = link.split("/signin?token=", 1)
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=TEST_TLS))
    request = urllib.request.Request(
        base + "/signin",
        data=f"token={token}".encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        opener.open(request, timeout=20)
        raise AssertionError("sign-in did not redirect")
    except urllib.error.HTTPError as error:
        assert error.code == 303, (error.code, error.read()[:300])
        set_cookie = error.headers["Set-Cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie, set_cookie
        cookie = set_cookie.split(";", 1)[0]
    status, _, body = http("GET", base + "/api/me", headers={"Cookie": cookie})
    assert status == 200, (status, body)
    return cookie, json.loads(body)["csrf_token"]


def metric(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus text scrape (``name`` with its labels); 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@dataclass
class WebApp:
    """One ``python -m bot`` without DISCORD_TOKEN, its state under ``root``."""

    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    launcher: tuple[str, ...] = (sys.executable, "-m", "bot")  # or scripts/run-bot, as an admin starts it
    cookie: str = ""  # the operator's session (started_app signs in with ``python -m bot web-link``)
    csrf: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.root / 'i2v.sqlite3'}"

    @property
    def log_path(self) -> Path:
        return self.root / "app.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "I2V_FAULT_", "WEB_"))}
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "I2V_MODEL": "tiny",
                "I2V_DEVICE": "cpu",
                "OUTPUT_DIR": str(self.root / "outputs"),
                "DATA_DIR": str(self.root / "data"),
                "WORKER": "embedded",
                "WEB_PORT": str(self.port),
                "I2V_POLL_INTERVAL_S": "0.1",
                "I2V_PROGRESS_INTERVAL_S": "0.2",
                "QUOTA_DAILY_GPU_SECONDS": "100000",
                "QUOTA_MAX_PENDING": "5",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
                "PYTHONPATH": _pythonpath(),
                "DISCORD_TOKEN": "",  # over a .env that scripts/run-bot would read from the checkout
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, *, wait_healthy: bool = True) -> None:
        """Start the app and wait until /healthz answers (200: the worker is alive, unless ``wait_healthy`` is
        False)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(self.launcher),
                env=self.env(),
                cwd=str(self.root),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + APP_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.tail()}")
            status, _, body = self._probe()
            if status == 200 or (status and not wait_healthy):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"app not healthy within {APP_START_TIMEOUT_S}s ({status} {body!r}):\n{self.tail()}"
                )
            time.sleep(0.5)

    def _probe(self) -> tuple[int, dict[str, str], bytes]:
        try:
            return http("GET", f"{self.url}/healthz", timeout=5)
        except OSError:
            return 0, {}, b""

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(APP_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def store(self, fn: Any, *args: Any, write: bool = False, **kwargs: Any) -> Any:
        """Run ``await fn(session, *args, **kwargs)`` on the app's database (in a transaction when ``write``)."""
        from jobs.db import make_engine, make_sessionmaker

        async def run() -> Any:
            engine = make_engine(self.database_url, read_only=not write)
            try:
                maker = make_sessionmaker(engine)
                if write:
                    async with maker.begin() as session:
                        return await fn(session, *args, **kwargs)
                async with maker() as session:
                    return await fn(session, *args, **kwargs)
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def printed_link(self) -> str:
        """The operator's sign-in link the app printed at its latest start."""
        return printed_link(self.log_path)

    def cli_link(self, *args: str) -> str:
        """A fresh link from ``python -m bot web-link ARGS`` (the store alone); the last URL it prints."""
        done = subprocess.run(
            [sys.executable, "-m", "bot", "web-link", *args],
            env=self.env(),
            cwd=str(self.root),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
        return done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[-1]

    def sign_in(self) -> None:
        """Sign the plain HTTP helpers in as the operator (a link from ``web-link``)."""
        self.cookie, self.csrf = sign_in_http(self.cli_link())

    def call(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """``http`` to this app as the signed-in operator (cookie, and the CSRF token on a POST)."""
        sent = {"Cookie": self.cookie, **({"X-CSRF-Token": self.csrf} if method != "GET" else {}), **(headers or {})}
        return http(method, path if path.startswith("http") else self.url + path, data=data, headers=sent)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def get_json(self, path: str) -> Any:
        status, _, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return json.loads(body)


@contextmanager
def started_app(
    root: Path, extra_env: dict[str, str], *, wait_healthy: bool = True, launcher: tuple[str, ...] | None = None
) -> Iterator[WebApp]:
    """A running app (see ``WebApp.start``) that must exit cleanly (status 0) when the block ends."""
    app = (
        WebApp(root, extra_env=extra_env) if launcher is None else WebApp(root, extra_env=extra_env, launcher=launcher)
    )
    app.start(wait_healthy=wait_healthy)
    try:
        app.sign_in()
        yield app
    finally:
        code = app.stop()
        assert code == 0, f"app exited with {code}:\n{app.tail()}"


def wait_for(browser: Any, check: Any, timeout: float = WAIT_S, what: str = "the page") -> Any:
    """Poll ``check(browser)`` until it returns something truthy (test-side polling, not the page's)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check(browser)
        except Exception:  # noqa: BLE001 - an element not there yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} did not happen within {timeout}s; page says: "
                f"{browser.find_element('tag name', 'body').text[:800]!r}"
            )
        time.sleep(0.2)


def by_id(browser: Any, element_id: str) -> Any:
    return browser.find_element("id", element_id)


def sign_in_browser(browser: Any, link: str) -> None:
    """Open a sign-in link in the browser, press Sign in, and wait for the signed-in page."""
    browser.get(link)
    by_id(browser, "signin").click()
    wait_for(
        browser,
        lambda b: by_id(b, "app").is_displayed() and "Signed in as" in by_id(b, "user").text,
        what="the signed-in page",
    )
