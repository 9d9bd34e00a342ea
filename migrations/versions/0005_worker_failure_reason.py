"""Workers that cannot start: the one-line reason of the last failed start, and since when the supervisor has
given up retrying fast (video generation is then reported unavailable).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:00:00

Plain ADD COLUMN on both dialects (nullable, no default): no table is rebuilt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("workers", sa.Column("failure_reason", sa.Text(), nullable=True))
    op.add_column("workers", sa.Column("unavailable_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("workers", "unavailable_since")
    op.drop_column("workers", "failure_reason")
