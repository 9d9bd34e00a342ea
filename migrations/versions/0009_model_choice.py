"""Model choice: each job names its model (existing jobs are I2VGen-XL's), each worker says which models it may
load, which it holds and how often and how long it switched, and a server may limit the models its members use.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:10:00

Plain ADD COLUMN with server defaults: no table is rebuilt, existing rows get the default in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("jobs", sa.Column("model", sa.String(length=32), server_default="i2vgenxl", nullable=False))
    op.add_column("jobs", sa.Column("affinity_skips", sa.Integer(), server_default="0", nullable=False))
    op.add_column("workers", sa.Column("loadable_models", sa.JSON(), server_default="[]", nullable=False))
    op.add_column("workers", sa.Column("loaded_model", sa.String(length=32), nullable=True))
    op.add_column("workers", sa.Column("switches", sa.Integer(), server_default="0", nullable=False))
    op.add_column("workers", sa.Column("switch_seconds", sa.Float(), server_default="0", nullable=False))
    op.add_column("guild_settings", sa.Column("models", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops a plain column in place)."""
    op.drop_column("guild_settings", "models")
    for column in ("switch_seconds", "switches", "loaded_model", "loadable_models"):
        op.drop_column("workers", column)
    op.drop_column("jobs", "affinity_skips")
    op.drop_column("jobs", "model")
