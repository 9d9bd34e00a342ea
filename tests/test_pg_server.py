"""The PostgreSQL tests run against the server they were meant to: the one PG_TEST_URL names, or, when it is
not given, the throwaway one made for this run (tests/pgserver.py) and not some other server on the machine."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


def test_pg_url_is_served_by_the_chosen_server(_pg_server: str, pg_url: str) -> None:
    url = make_url(pg_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        port = int(conn.execute("SHOW port").fetchone()[0])  # type: ignore[index]
        data_directory = Path(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        database = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    assert database == url.database
    exported = make_url(os.environ["PG_TEST_URL"])
    assert port == exported.port == url.port
    print(f"PostgreSQL tests use the {_pg_server} server on port {port}, data in {data_directory}")
    if _pg_server == "throwaway":
        assert data_directory.parent.name.startswith("i2v-pg-"), data_directory
        assert data_directory.parent.parent == Path(tempfile.gettempdir())
