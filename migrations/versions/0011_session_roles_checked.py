"""When a web session's Discord roles were last read (from the sign-in link, then by the bot's re-check through
Discord's member endpoint): roles not re-read within the re-check period lapse.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 12:30:00

One plain ADD COLUMN: no table is rebuilt. Sessions made before it have no time and so no role-derived rights
until the bot re-reads their roles.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("web_sessions", sa.Column("roles_checked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops a plain column in place)."""
    op.drop_column("web_sessions", "roles_checked_at")
