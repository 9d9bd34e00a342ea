"""Debian's nginx as the page's TLS reverse proxy, run by a test as a subprocess with its own configuration on a
free port: the ``server`` block is the one docs/deploy.md gives (the first ```nginx block), with only the names, the
ports and the certificate paths replaced, around a main configuration that keeps every file in the test's folder.
The certificate is self-signed for localhost, made with the openssl command.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bot.harness import REPO_ROOT

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")
NGINX_HINT = "install Debian's nginx (scripts/test does it when run as root)"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
NGINX_BLOCK = re.compile(r"```nginx\n(.*?)```", re.DOTALL)
NGINX_START_TIMEOUT_S = 20.0

# what the documented site names, and what the test puts there
DOC_NAME = "i2v.example.org"
DOC_LISTEN = "listen 443 ssl;"
DOC_CERT = "/etc/letsencrypt/live/i2v.example.org/fullchain.pem"
DOC_KEY = "/etc/letsencrypt/live/i2v.example.org/privkey.pem"
DOC_UPSTREAM = "proxy_pass http://127.0.0.1:7860;"

MAIN_CONF = """
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{site}
}}
"""


def find_nginx() -> str:
    for path in (*NGINX_CANDIDATES, shutil.which("nginx") or ""):
        if path and os.path.exists(path):
            return path
    raise AssertionError(f"no nginx found: {NGINX_HINT}")


def documented_site() -> str:
    """The first ```nginx block of docs/deploy.md."""
    blocks = NGINX_BLOCK.findall(DEPLOY_DOC.read_text())
    assert blocks, f"{DEPLOY_DOC} has no ```nginx block"
    return str(blocks[0])


def site_for(port: int, upstream_port: int, cert: Path, key: Path) -> str:
    """The documented site, listening on 127.0.0.1:``port`` for localhost and proxying to ``upstream_port``."""
    site = documented_site()
    for placeholder in (DOC_LISTEN, DOC_CERT, DOC_KEY, DOC_UPSTREAM, DOC_NAME):
        assert placeholder in site, f"docs/deploy.md's nginx site no longer has {placeholder!r}"
    return (
        site.replace(DOC_LISTEN, f"listen 127.0.0.1:{port} ssl;")
        .replace(DOC_CERT, str(cert))
        .replace(DOC_KEY, str(key))
        .replace(DOC_UPSTREAM, f"proxy_pass http://127.0.0.1:{upstream_port};")
        .replace(DOC_NAME, "localhost")
    )


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for localhost (and 127.0.0.1), valid for a day."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@dataclass
class Nginx:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def log(self) -> str:
        return "\n".join(
            (self.folder / name).read_text(errors="replace")[-3000:]
            for name in ("error.log", "access.log")
            if (self.folder / name).exists()
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(folder: Path, port: int, upstream_port: int) -> Nginx:
    """nginx in the foreground with the documented site; returns once it answers TLS on ``port``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(folder)
    user = "user root;\n" if os.geteuid() == 0 else ""  # a root master would hand its workers to nobody
    conf = folder / "nginx.conf"
    conf.write_text(MAIN_CONF.format(user=user, dir=folder, site=site_for(port, upstream_port, cert, key)))
    nginx = find_nginx()
    test = subprocess.run(
        [nginx, "-t", "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert test.returncode == 0, f"nginx -t refused the configuration:\n{test.stderr}\n{conf.read_text()}"
    proc = subprocess.Popen(
        [nginx, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Nginx(folder, port, proc)
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + NGINX_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}:\n{server.log()}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"nginx did not answer on {port}:\n{server.log()}") from None
            time.sleep(0.2)
