"""Content safety: prompt blocklists, the classifier's verdicts and the spoiler choice on each job, each server's
policy for unsafe videos and spoilers, and members' reports of results.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 07:30:00

New columns are plain ADD COLUMN (nullable, or NOT NULL with a server default) on both back ends: no table is
rebuilt. Jobs made before this revision were never checked (their verdicts are NULL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("jobs", sa.Column("spoiler", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("jobs", sa.Column("input_verdict", sa.String(length=16), nullable=True))
    op.add_column("jobs", sa.Column("output_verdict", sa.String(length=16), nullable=True))
    op.add_column("jobs", sa.Column("safety_seconds", sa.Float(), nullable=True))
    op.add_column("jobs", sa.Column("withheld_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("guild_settings", sa.Column("unsafe_policy", sa.String(length=16), nullable=True))
    op.add_column("guild_settings", sa.Column("spoiler_all", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "blocked_terms",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("term", sa.String(length=100), nullable=False),
        sa.Column("added_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "term", name=op.f("pk_blocked_terms")),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("reporter_id", sa.BigInteger(), nullable=False),
        sa.Column("reported_user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.BigInteger(), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_reports_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint("job_id", "reporter_id", name=op.f("uq_reports_job_id_reporter_id")),
    )
    op.create_index("ix_reports_guild_id_resolved_at", "reports", ["guild_id", "resolved_at"], unique=False)
    op.create_index(op.f("ix_reports_reporter_id"), "reports", ["reporter_id"], unique=False)
    op.create_index(op.f("ix_reports_reported_user_id"), "reports", ["reported_user_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops a plain column in place)."""
    op.drop_index(op.f("ix_reports_reported_user_id"), table_name="reports")
    op.drop_index(op.f("ix_reports_reporter_id"), table_name="reports")
    op.drop_index("ix_reports_guild_id_resolved_at", table_name="reports")
    op.drop_table("reports")
    op.drop_table("blocked_terms")
    op.drop_column("guild_settings", "spoiler_all")
    op.drop_column("guild_settings", "unsafe_policy")
    for column in ("withheld_at", "safety_seconds", "output_verdict", "input_verdict", "spoiler"):
        op.drop_column("jobs", column)
