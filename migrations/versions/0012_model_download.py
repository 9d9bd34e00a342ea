"""A worker's model download in progress (its first load of a model that is not in the local cache yet): which
model, bytes done and bytes in all, so /healthz, the page and the bot can say so instead of an estimate.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 13:00:00

Plain ADD COLUMNs: no table is rebuilt. NULL means no download is under way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("workers", sa.Column("download_model", sa.String(length=32), nullable=True))
    op.add_column("workers", sa.Column("download_done_bytes", sa.BigInteger(), nullable=True))
    op.add_column("workers", sa.Column("download_total_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops a plain column in place)."""
    op.drop_column("workers", "download_total_bytes")
    op.drop_column("workers", "download_done_bytes")
    op.drop_column("workers", "download_model")
