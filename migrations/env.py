"""Alembic environment.

Used two ways:
- programmatically by ``jobs.db.run_alembic`` / ``jobs.db.migrate``, which hand over a live connection in
  ``config.attributes["connection"]`` (so it works from a running event loop and with our SQLite pragmas);
- from the command line: ``alembic -c migrations/alembic.ini upgrade head`` with ``DATABASE_URL`` set
  (default ``jobs.db.DEFAULT_DATABASE_URL``); it then builds an async engine and runs under ``asyncio.run``.
SQLite migrations use batch mode ("move and copy"), PostgreSQL ones plain ALTERs.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from jobs.db import DEFAULT_DATABASE_URL, make_engine, normalize_url
from jobs.models import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render our UtcDateTime as the plain SQLAlchemy type, so migrations do not import the models."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=_render_item,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return normalize_url(
        config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    )


async def _run_async() -> None:
    engine = make_engine(_url())
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure_and_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a connection handed over by jobs.db, or one we open ourselves."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
