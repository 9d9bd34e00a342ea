"""Where the bytes live: input images and finished MP4s, behind one small interface.

Every process reaches the bytes through the store, never through a path another process wrote: the bot adds the
input image in the transaction that enqueues the job, the worker reads it from there and puts the MP4 in the
transaction that marks the job succeeded, and the delivering process reads the MP4 back.

:class:`BlobStore` is the interface; :class:`DatabaseBlobs` (the default, :data:`DATABASE_BLOBS`) keeps the bytes
in the ``input_images`` and ``job_videos`` tables (``bytea`` on PostgreSQL, ``BLOB`` on SQLite). An object store
(S3-compatible) can implement the same methods: keep the rows (they carry the reference counts and sizes, inside
the caller's transaction) with ``data`` NULL, and put/get/delete the objects under the sha256 or job id. Objects
are written before the transaction commits and deleted after it, so a crash leaves at worst an orphan object,
never a row without its bytes. See docs/storage.md for when that becomes the better home.

Inputs: one row per distinct image (content-addressed by SHA-256), reference-counted by the jobs that hold it.
Adding a reference is an upsert that locks the row; dropping one decrements under the same lock and deletes the
row with the last reference, so two concurrent requests with the same image can never delete each other's input.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from sqlalchemy import LargeBinary, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import InputImage, JobVideo, utcnow

MAX_INPUT_BLOB_BYTES = 20 * 1024 * 1024
"""Bytes: the largest input image the store accepts (the bot refuses larger downloads before reading them)."""
MAX_VIDEO_BLOB_BYTES = 100 * 1024 * 1024
"""Bytes: the largest MP4 the store accepts (Discord's largest upload limit, boost tier 3)."""


class BlobTooLarge(ValueError):
    """The bytes are over the store's cap; nothing was written."""


class BlobStore(Protocol):
    """Input images and finished videos. Every method runs in the caller's transaction (``session``)."""

    async def add_input(self, session: AsyncSession, sha256: str, data: bytes | None) -> bool:
        """Add one reference to the image ``sha256``, storing ``data`` if it is new. With ``data=None`` only an
        image still stored gets the reference; False (nothing written) when it is gone."""

    async def read_input(self, session: AsyncSession, sha256: str) -> bytes | None:
        """The image's bytes, or None when no job keeps it any more."""

    async def drop_input(self, session: AsyncSession, sha256: str) -> None:
        """Drop one reference; the bytes go with the last one."""

    async def put_video(self, session: AsyncSession, job_id: int, data: bytes) -> None:
        """Store the finished MP4 of ``job_id``."""

    async def read_video(self, session: AsyncSession, job_id: int) -> bytes | None:
        """The MP4 of ``job_id``, or None when it was never made or was deleted."""

    async def delete_video(self, session: AsyncSession, job_id: int) -> bool:
        """Delete the MP4 of ``job_id``; False when there was none."""

    async def video_size(self, session: AsyncSession, job_id: int) -> int | None:
        """The MP4's length in bytes, or None when there is none (reads no bytes)."""

    async def read_video_range(self, session: AsyncSession, job_id: int, start: int, length: int) -> bytes | None:
        """``length`` bytes of the MP4 from offset ``start`` (fewer at its end), or None when there is none."""

    async def input_size(self, session: AsyncSession, sha256: str) -> int | None:
        """The image's length in bytes, or None when no job keeps it any more (reads no bytes)."""

    async def read_input_range(self, session: AsyncSession, sha256: str, start: int, length: int) -> bytes | None:
        """``length`` bytes of the image from offset ``start`` (fewer at its end), or None when it is gone."""


def sha256_of(data: bytes) -> str:
    """The content address of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _check_size(data: bytes, cap: int, what: str) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) > cap:
        raise BlobTooLarge(f"{what} is {len(data):,} bytes; the store keeps at most {cap:,}")


class DatabaseBlobs:
    """:class:`BlobStore` in the job database itself (``input_images.data``, ``job_videos.data``)."""

    async def add_input(self, session: AsyncSession, sha256: str, data: bytes | None) -> bool:
        if data is None:
            kept = await session.scalar(
                update(InputImage)
                .where(InputImage.sha256 == sha256)
                .values(refs=InputImage.refs + 1)
                .returning(InputImage.sha256)
                .execution_options(synchronize_session=False)
            )
            return kept is not None
        _check_size(data, MAX_INPUT_BLOB_BYTES, "the input image")
        if sha256_of(data) != sha256:
            raise ValueError(f"the image's bytes do not hash to {sha256!r}")
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        stmt = insert(InputImage).values(
            sha256=sha256, data=bytes(data), size_bytes=len(data), refs=1, created_at=utcnow()
        )
        # ON CONFLICT DO UPDATE locks the existing row until the caller's transaction ends; if a concurrent
        # drop deleted it meanwhile, PostgreSQL inserts a fresh row instead (SQLite has one writer at a time).
        await session.execute(stmt.on_conflict_do_update(index_elements=["sha256"], set_={"refs": InputImage.refs + 1}))
        return True

    async def read_input(self, session: AsyncSession, sha256: str) -> bytes | None:
        return await session.scalar(select(InputImage.data).where(InputImage.sha256 == sha256))

    async def drop_input(self, session: AsyncSession, sha256: str) -> None:
        left = await session.scalar(
            update(InputImage)
            .where(InputImage.sha256 == sha256)
            .values(refs=InputImage.refs - 1)
            .returning(InputImage.refs)
            .execution_options(synchronize_session=False)
        )
        if left is not None and left <= 0:
            await session.execute(
                delete(InputImage)
                .where(InputImage.sha256 == sha256, InputImage.refs <= 0)
                .execution_options(synchronize_session=False)
            )

    async def put_video(self, session: AsyncSession, job_id: int, data: bytes) -> None:
        _check_size(data, MAX_VIDEO_BLOB_BYTES, "the video")
        session.add(JobVideo(job_id=job_id, data=bytes(data), size_bytes=len(data), created_at=utcnow()))
        await session.flush()

    async def read_video(self, session: AsyncSession, job_id: int) -> bytes | None:
        return await session.scalar(select(JobVideo.data).where(JobVideo.job_id == job_id))

    async def delete_video(self, session: AsyncSession, job_id: int) -> bool:
        row = (
            await session.execute(
                delete(JobVideo)
                .where(JobVideo.job_id == job_id)
                .returning(JobVideo.job_id)
                .execution_options(synchronize_session=False)
            )
        ).first()
        return row is not None

    async def video_size(self, session: AsyncSession, job_id: int) -> int | None:
        return await session.scalar(select(JobVideo.size_bytes).where(JobVideo.job_id == job_id))

    async def read_video_range(self, session: AsyncSession, job_id: int, start: int, length: int) -> bytes | None:
        _check_range(start, length)
        return await session.scalar(select(_slice(JobVideo.data, start, length)).where(JobVideo.job_id == job_id))

    async def input_size(self, session: AsyncSession, sha256: str) -> int | None:
        return await session.scalar(select(InputImage.size_bytes).where(InputImage.sha256 == sha256))

    async def read_input_range(self, session: AsyncSession, sha256: str, start: int, length: int) -> bytes | None:
        _check_range(start, length)
        return await session.scalar(select(_slice(InputImage.data, start, length)).where(InputImage.sha256 == sha256))


def _check_range(start: int, length: int) -> None:
    if start < 0 or length <= 0:
        raise ValueError(f"a byte range needs start >= 0 and length > 0, got start={start}, length={length}")


def _slice(column: Any, start: int, length: int) -> Any:
    """``substr`` of a BLOB/bytea column (SQL counts from 1): the database sends only those bytes."""
    return func.substr(column, start + 1, length, type_=LargeBinary).label("data")


DATABASE_BLOBS: BlobStore = DatabaseBlobs()
"""The store every transition uses unless it is given another."""
