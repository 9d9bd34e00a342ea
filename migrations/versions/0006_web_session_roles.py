"""Sign-in links and web sessions carry the Discord member's server and role ids, so the page applies the same
role tiers as Discord.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:00:00

Only the two web tables change (plain ADD COLUMN on every back end; the jobs table is not touched). Rows made
before this revision get no roles: their sessions keep the defaults until the user signs in again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("web_sign_in_links", "web_sessions")


def upgrade() -> None:
    """Upgrade schema."""
    for table in TABLES:
        op.add_column(table, sa.Column("guild_id", sa.BigInteger(), nullable=True))
        op.add_column(table, sa.Column("role_ids", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops a plain column in place)."""
    for table in TABLES:
        op.drop_column(table, "role_ids")
        op.drop_column(table, "guild_id")
