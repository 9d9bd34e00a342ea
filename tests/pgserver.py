"""A throwaway PostgreSQL server for the test suite, used when ``PG_TEST_URL`` is not given.

It is made from the PostgreSQL binaries on this machine (``pg_ctl`` and ``initdb`` on ``PATH``, else the newest
``/usr/lib/postgresql/<version>/bin``, where Debian's ``postgresql`` package puts them): a new cluster in a
temporary folder, trust login for ``postgres`` on 127.0.0.1 only, a free port, its socket in that folder, no
fsync (nothing in it outlives the run). It is stopped and deleted when the test run ends.

``initdb`` and ``postgres`` refuse to run as root. Run as root, the cluster belongs to an unprivileged user
instead (``postgres``, which Debian's package creates, else ``nobody``) and every server command runs as that
user through ``runuser``; run as anyone else, it belongs to the caller. Either way nobody logs in as root and
the machine's own PostgreSQL (if any) is not touched.

    python -m tests.pgserver      # start one, print its URL, stop it on Enter (for trying things by hand)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_S = 60
"""How long ``pg_ctl start`` may take before the server is given up (seconds)."""
STOP_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 120
"""Ceiling for one initdb / pg_ctl call (seconds); initdb on a loaded machine takes a few seconds."""
UNPRIVILEGED_USERS = ("postgres", "nobody")
SUPERUSER = "postgres"
MAX_CONNECTIONS = 200
"""Concurrency tests open many real connections at once; PostgreSQL's default is 100."""


class PostgresUnavailable(RuntimeError):
    """No throwaway server can be made here (no binaries, no unprivileged user); the message says why."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: from ``PATH`` first, else the newest Debian install."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    found = [Path(d) for d in glob.glob(BIN_GLOB) if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file()]
    if not found:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: install "
            "them (Debian/Ubuntu: apt-get install postgresql; scripts/test does it when run as root) or set "
            "PG_TEST_URL to a server the tests may create databases on"
        )
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1)


def _server_user() -> str | None:
    """The user the server runs as: None for the caller, or an unprivileged account when run as root."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable(
        f"running as root and none of the users {', '.join(UNPRIVILEGED_USERS)} exists "
        "to own the throwaway PostgreSQL (initdb refuses root)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """One temporary cluster: ``start()`` returns its URL, ``stop()`` ends it and deletes its folder."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.user = _server_user()
        self.root: Path | None = None
        self.port: int | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "not started"
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = COMMAND_TIMEOUT_S) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.root / "server.log" if self.root is not None else None
            tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
            raise PostgresUnavailable(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}".strip())

    def start(self) -> str:
        self.root = Path(tempfile.mkdtemp(prefix="i2v-pg-"))
        try:
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            options = (
                f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                f"-c fsync=off -c full_page_writes=off "
                f"-c max_connections={MAX_CONNECTIONS}"
            )
            self.port = _free_port()
            self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-o",
                f"-p {self.port} {options}",
                timeout=START_TIMEOUT_S + 10,
            )
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is kept) and delete its folder. Idempotent."""
        root, self.root = self.root, None
        if root is None:
            return
        try:
            if (root / "data" / "postmaster.pid").exists():
                self.root = root
                try:
                    self._run(
                        "pg_ctl",
                        "stop",
                        "-D",
                        str(root / "data"),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        str(STOP_TIMEOUT_S),
                        timeout=STOP_TIMEOUT_S + 10,
                    )
                finally:
                    self.root = None
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    server = ThrowawayPostgres()
    print(server.start(), flush=True)
    try:
        input("PostgreSQL is running; press Enter to stop it and delete its data. ")
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
