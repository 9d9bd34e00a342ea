"""The PostgreSQL tests run against the server they were meant to: the one PG_TEST_URL names, or, when it is
not given, the throwaway one made for this run (tests/pgserver.py) and not some other server on the machine."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


def _one_value(conn: psycopg.Connection[Any], query: LiteralString) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return row[0]


def test_pg_url_is_served_by_the_chosen_server(_pg_server: str, pg_url: str) -> None:
    url = make_url(pg_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        port = int(_one_value(conn, "SHOW port"))
        data_directory = Path(_one_value(conn, "SHOW data_directory"))
        database = _one_value(conn, "SELECT current_database()")
    assert database == url.database
    exported = make_url(os.environ["PG_TEST_URL"])
    assert port == exported.port == url.port
    print(f"PostgreSQL tests use the {_pg_server} server on port {port}, data in {data_directory}")
    if _pg_server == "throwaway":
        assert data_directory.parent.name.startswith("i2v-pg-"), data_directory
        assert data_directory.parent.parent == Path(tempfile.gettempdir())
