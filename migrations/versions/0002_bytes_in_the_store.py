"""The job store carries the bytes: input images and finished MP4s move from files into tables.

Before: a job named its input with ``input_path`` (a file under the bot's ``DATA_DIR``) and its video with
``output_path`` (a file under the worker's ``OUTPUT_DIR``), both relative to the working directory of the process
that wrote them. After: ``input_images`` holds each distinct image once (reference-counted by the jobs that keep
it) and ``job_videos`` each succeeded job's MP4; ``output_path`` only records a disk copy.

The data step reads the files at the old paths (relative ones from the working directory this migration runs in,
the bot's, like the bot itself did), so no queued job loses its input and no undelivered video is lost. A job
whose input file is already gone is marked released (a worker then fails it with a clear message; a re-roll says
the image is gone). Also: ``releases`` (give-backs without charge; ``attempt`` never decreases any more), the
workers' ``model``, and ``phase`` as a checked enum.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:40:00

"""

import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PHASES = ("queued", "loading", "preparing", "denoising", "decoding", "encoding", "done", "failed", "cancelled")
PHASE_OF_STATUS = {
    "queued": "queued",
    "running": "loading",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}
OLD_INPUT_DIR = Path("data") / "inputs"  # where the bot wrote inputs by default (DATA_DIR=data)
OLD_OUTPUT_DIR = Path("outputs")  # where the worker wrote videos by default (OUTPUT_DIR=outputs)

jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("phase", sa.String()),
    sa.column("input_path", sa.Text()),
    sa.column("input_sha256", sa.String()),
    sa.column("output_path", sa.Text()),
    sa.column("input_released_at", sa.DateTime(timezone=True)),
)
input_images = sa.table(
    "input_images",
    sa.column("sha256", sa.String()),
    sa.column("data", sa.LargeBinary()),
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("refs", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
job_videos = sa.table(
    "job_videos",
    sa.column("job_id", sa.Integer()),
    sa.column("data", sa.LargeBinary()),
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _now(dialect: str) -> datetime:
    now = datetime.now(UTC)
    return now.replace(tzinfo=None) if dialect == "sqlite" else now


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _move_files_into_tables() -> None:
    bind = op.get_bind()
    now = _now(bind.dialect.name)
    refs: dict[str, int] = {}
    rows = bind.execute(
        sa.select(jobs.c.id, jobs.c.status, jobs.c.input_path, jobs.c.input_sha256, jobs.c.output_path).order_by(
            jobs.c.id
        )
    ).all()
    for row in rows:
        if row.input_sha256 in refs:
            refs[row.input_sha256] += 1
        else:
            data = _read(row.input_path)
            if data is not None and hashlib.sha256(data).hexdigest() == row.input_sha256:
                bind.execute(
                    input_images.insert().values(
                        sha256=row.input_sha256, data=data, size_bytes=len(data), refs=0, created_at=now
                    )
                )
                refs[row.input_sha256] = 1
            else:
                bind.execute(jobs.update().where(jobs.c.id == row.id).values(input_released_at=now))
        if row.status == "succeeded":
            video = _read(row.output_path)
            if video is not None:
                bind.execute(
                    job_videos.insert().values(job_id=row.id, data=video, size_bytes=len(video), created_at=now)
                )
    for sha, count in refs.items():
        bind.execute(input_images.update().where(input_images.c.sha256 == sha).values(refs=count))
    for status, phase in PHASE_OF_STATUS.items():
        bind.execute(jobs.update().where(jobs.c.status == status, jobs.c.phase.not_in(PHASES)).values(phase=phase))


def upgrade() -> None:
    """Upgrade schema.

    No batch ("move and copy") on ``jobs`` here: on SQLite, with ``foreign_keys=ON`` (always on, see jobs.db),
    dropping the old copy of a table fires the ON DELETE actions of the tables that reference it, which would empty
    ``quota_ledger`` and ``job_videos``. SQLite adds and drops plain columns in place (ALTER TABLE, 3.35+); the new
    CHECK on ``phase`` is added on PostgreSQL only (SQLite cannot add one in place; the model's enum type checks
    every value the application writes).
    """
    op.create_table(
        "input_images",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("refs", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_input_images")),
    )
    op.create_table(
        "job_videos",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_videos_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_videos")),
    )
    op.add_column("jobs", sa.Column("input_released_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("releases", sa.Integer(), server_default="0", nullable=False))
    op.add_column("workers", sa.Column("model", sa.String(length=255), nullable=True))
    _move_files_into_tables()
    op.drop_column("jobs", "input_path")
    if op.get_bind().dialect.name != "sqlite":
        op.create_check_constraint(op.f("ck_jobs_job_phase"), "jobs", sa.column("phase").in_(PHASES))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def downgrade() -> None:
    """Downgrade schema: the bytes go back to files under ./data/inputs and ./outputs (in place, no batch)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_jobs_job_phase"), "jobs", type_="check")
    op.add_column("jobs", sa.Column("input_path", sa.Text(), server_default="", nullable=False))
    for sha, data in bind.execute(sa.select(input_images.c.sha256, input_images.c.data)).all():
        path = OLD_INPUT_DIR / sha
        if data is not None:
            _write(path, data)
        bind.execute(jobs.update().where(jobs.c.input_sha256 == sha).values(input_path=str(path)))
    for job_id, data in bind.execute(sa.select(job_videos.c.job_id, job_videos.c.data)).all():
        if data is None:
            continue
        path = OLD_OUTPUT_DIR / f"video_migrated_{job_id}.mp4"
        _write(path, data)
        bind.execute(jobs.update().where(jobs.c.id == job_id).values(output_path=str(path)))
    op.drop_column("workers", "model")
    op.drop_column("jobs", "releases")
    op.drop_column("jobs", "input_released_at")
    op.drop_table("job_videos")
    op.drop_table("input_images")
