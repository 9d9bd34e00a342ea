"""The web page: jobs made from it (source 'web'), single-use sign-in links and browser sessions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SOURCES = ("slash", "context_menu", "mention", "reroll", "vary")
NEW_SOURCES = OLD_SOURCES + ("web",)


def _sources_check(values: tuple[str, ...]) -> str:
    return "source IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _set_sources(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    """Replace the CHECK constraint on jobs.source.

    PostgreSQL: drop and re-create the constraint. SQLite cannot alter a CHECK constraint, and the batch recipe
    (copy the table, drop the old one) would run the ON DELETE CASCADE of every table that references jobs
    (videos, ledger) while foreign keys are on, which they are inside a transaction. Widening or narrowing an IN
    list changes no stored row, so SQLite's documented in-place schema edit applies instead: rewrite the
    table's SQL in the schema table and bump the schema version, in the migration's transaction.
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_jobs_job_source"), "jobs", type_="check")
        op.create_check_constraint(op.f("ck_jobs_job_source"), "jobs", _sources_check(new))
        return
    sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").scalar()
    before, after = _sources_check(old), _sources_check(new)
    if sql is None or before not in sql:
        raise RuntimeError(f"jobs table's source constraint is not {before!r}; cannot migrate")
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'jobs'", (sql.replace(before, after),)
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    """Upgrade schema."""
    _set_sources(OLD_SOURCES, NEW_SOURCES)
    op.create_table(
        "web_sign_in_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_web_sign_in_links")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_web_sessions")),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("web_sign_in_links")
    op.execute("DELETE FROM jobs WHERE source = 'web'")
    _set_sources(NEW_SOURCES, OLD_SOURCES)
