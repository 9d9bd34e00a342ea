"""Why a finished job's result never reached Discord (the channel was deleted, or the bot may no longer post there):
recorded on the job when delivery stops, so an admin and the page can tell; the video stays in the store.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 12:00:00

One plain ADD COLUMN: no table is rebuilt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("jobs", sa.Column("delivery_error", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops a plain column in place)."""
    op.drop_column("jobs", "delivery_error")
