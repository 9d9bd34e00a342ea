"""Operator sign-in: a link (and the session made from it) may carry the operator's rights itself (the link the
app prints at start), and the application's owner or team members, as the bot last read them from Discord, are
kept so the page and ``python -m bot web-link`` know the operator without Discord.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 07:30:00

Plain ADD COLUMN on the two web tables and one new table: no table is rebuilt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("web_sign_in_links", "web_sessions")


def upgrade() -> None:
    """Upgrade schema."""
    for table in TABLES:
        op.add_column(table, sa.Column("operator", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "app_operators",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_app_operators")),
    )


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops a plain column in place)."""
    op.drop_table("app_operators")
    for table in TABLES:
        op.drop_column(table, "operator")
