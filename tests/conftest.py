"""Shared database fixtures for the whole suite.

- ``sqlite_url``: a migrated SQLite file in the test's tmp dir (a copy of a template migrated once per session).
- ``pg_url``: a fresh migrated PostgreSQL database, created from a per-session template and dropped after the
  test. Server from ``PG_TEST_URL`` when it is given (its user must be allowed to create databases); otherwise
  a throwaway server made for this run from the machine's PostgreSQL binaries (``tests/pgserver.py``), its URL
  put into ``PG_TEST_URL`` for the processes the tests start. With ``CI=true`` a server that cannot be reached
  or made fails the test loudly; elsewhere the test is skipped with the reason.
- ``db_url``: parametrized over both; ``db_engine`` / ``db_sessionmaker``: an engine and sessionmaker on it.

Schemas are made by Alembic (``jobs.db.migrate``), never ``create_all``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from jobs.db import make_engine, make_sessionmaker, migrate
from jobs.workers import pid_alive
from tests.pgserver import PostgresUnavailable, ThrowawayPostgres

# The fake Discord server fixture (``fake_discord``) for every test directory.
pytest_plugins = ["tests.fakediscord.plugin"]

PG_CONNECT_TIMEOUT_S = 5


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with tests marked ``slow`` (real processes, real generation: seconds each) first, the quick ones
    after them. scripts/test hands whole files to its pytest processes in this order (pytest-xdist's ``--dist
    loadfile --no-loadscope-reorder``), so the long files start early and the quick ones even out the end of the
    run. The sort is stable and its key is the same for every test of a file: a file's tests stay together and in
    their own order."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def in_ci() -> bool:
    """True when the CI environment variable says so (``CI=true``/``1``/``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pg_test_url() -> str:
    """The PostgreSQL server tests use (an async URL; its database is only used to create others). Set once
    the ``_pg_server`` fixture has run."""
    url = os.environ.get("PG_TEST_URL", "").strip()
    if not url:
        raise RuntimeError("PG_TEST_URL is not set: use the pg_url fixture, which provides a server")
    return url


def _no_postgres(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message} (CI=true: PostgreSQL tests must run, not skip)", pytrace=False)
    pytest.skip(message)


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg", database=database).render_as_string(hide_password=False)


def _pg_admin_connect() -> Any:
    """An autocommit psycopg connection to the PG_TEST_URL database (for CREATE/DROP DATABASE)."""
    import psycopg

    url = make_url(pg_test_url())
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=PG_CONNECT_TIMEOUT_S,
    )


_OUR_DATABASE = re.compile(r"^i2v_(?:tpl|t|e)_(\d+)_[0-9a-f]+$")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", None)


def _drop_stale_databases(conn: Any) -> None:
    """Drop test databases left by pytest runs that were killed (their pid is gone). Only for a local server,
    where the pid in the name is one of this machine's processes."""
    if make_url(pg_test_url()).host not in LOCAL_HOSTS:
        return
    for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'i2v\\_%'").fetchall():
        match = _OUR_DATABASE.match(name)
        if match and not pid_alive(int(match.group(1))):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _database_name(kind: str) -> str:
    return f"i2v_{kind}_{os.getpid()}_{uuid.uuid4().hex[:12]}"


def _drop_database(name: str) -> None:
    with _pg_admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Code run in-process that sets up the process's logging (a command-line ``main``) replaces the root handlers
    with ones writing to that test's captured streams, closed once the test ends; give every test the root logger
    as it found it, so a later test's log lines do not go to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite_template") / "template.sqlite3"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    # The engine is disposed, so the WAL is checkpointed into the main file: copying it alone is complete.
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """URL of a freshly migrated SQLite database file private to this test."""
    path = tmp_path / "i2v.sqlite3"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def _pg_server() -> Iterator[str]:
    """The server of PG_TEST_URL when it is given, else a throwaway one for this run (its URL exported as
    PG_TEST_URL while the run lasts)."""
    if os.environ.get("PG_TEST_URL", "").strip():
        yield "given"
        return
    try:
        server = ThrowawayPostgres()
        url = server.start()
    except PostgresUnavailable as exc:
        _no_postgres(f"PG_TEST_URL is not set and no throwaway PostgreSQL could be started: {exc}")
    os.environ["PG_TEST_URL"] = url
    try:
        yield "throwaway"
    finally:
        os.environ.pop("PG_TEST_URL", None)
        server.stop()


@pytest.fixture(scope="session")
def _pg_template(_pg_server: str) -> Iterator[str]:
    try:
        conn = _pg_admin_connect()
    except Exception as exc:  # noqa: BLE001 - any connect failure means the same thing here
        _no_postgres(f"PostgreSQL at PG_TEST_URL={make_url(pg_test_url()).render_as_string()} is unreachable: {exc}")
    name = _database_name("tpl")
    with conn:
        _drop_stale_databases(conn)
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(migrate(_with_database(pg_test_url(), name)))
        yield name
    finally:
        _drop_database(name)


@pytest.fixture
def pg_url(_pg_template: str) -> Iterator[str]:
    """URL of a fresh migrated PostgreSQL database private to this test (dropped afterwards)."""
    name = _database_name("t")
    with _pg_admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template}"')
    try:
        yield _with_database(pg_test_url(), name)
    finally:
        _drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL; every test using it runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
async def db_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``db_url``, disposed after the test."""
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def db_sessionmaker(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A sessionmaker on ``db_engine`` (``expire_on_commit=False``)."""
    return make_sessionmaker(db_engine)


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL with no tables yet (for migration tests)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"


@pytest.fixture
def empty_pg_url(_pg_template: str) -> Iterator[str]:
    """An empty PostgreSQL database (no tables yet), dropped after the test."""
    name = _database_name("e")
    with _pg_admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(pg_test_url(), name)
    finally:
        _drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest) -> str:
    """An empty, unmigrated database on each back end."""
    return request.getfixturevalue("empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url")
