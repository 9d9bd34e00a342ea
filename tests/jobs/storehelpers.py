"""Builders shared by the store tests (not a test module)."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import fields
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from generator.params import GenerationParams
from jobs.admission import NewJob
from jobs.models import Job, JobSource, JobStatus, utcnow
from jobs.quota import QuotaPolicy

IMAGE = b"input image"
"""The bytes of the input image every test job names (not a real picture: the store does not decode)."""
SHA = hashlib.sha256(IMAGE).hexdigest()
GUILD = 111
CHANNEL = 222
UPLOAD_LIMIT = 10 * 1024 * 1024
GENEROUS = QuotaPolicy(daily_gpu_seconds=1e9, max_pending=10_000)


PARAM_NAMES = frozenset(f.name for f in fields(GenerationParams))


def test_params(**overrides: Any) -> GenerationParams:
    """Valid I2VGen-XL parameters (512p, 16 frames, 50 steps) unless overridden."""
    values: dict[str, Any] = dict(
        prompt="a cat surfing", negative_prompt="", resolution="512p", frames=16, fps=8, steps=50, guidance=9.0, seed=42
    )
    return GenerationParams(**(values | overrides))


def new_job(user_id: int, **overrides: Any) -> NewJob:
    """A valid request (512x512, 16 frames, 50 steps) with a fixed cost unless overridden; an override named like
    a generation parameter (``steps``, ``model``, ...) changes the job's parameters."""
    params = test_params(**{k: v for k, v in overrides.items() if k in PARAM_NAMES})
    values: dict[str, Any] = dict(
        user_id=user_id,
        channel_id=CHANNEL,
        guild_id=GUILD,
        source=JobSource.SLASH,
        params=params,
        width=512,
        height=512,
        input_sha256=SHA,
        upload_limit_bytes=UPLOAD_LIMIT,
        cost_estimate=10.0,
    )
    values.update({k: v for k, v in overrides.items() if k not in PARAM_NAMES})
    return NewJob(**values)


async def bulk_queue(session: AsyncSession, count: int, *, users: int = 1, cost: float = 1.0) -> None:
    """Insert ``count`` queued jobs directly (fast fixture data for claim tests; no quota involved)."""
    now = utcnow()
    rows = [
        dict(
            user_id=1 + i % users,
            channel_id=CHANNEL,
            guild_id=GUILD,
            source=JobSource.SLASH,
            prompt=f"job {i}",
            negative_prompt="",
            resolution="256p",
            frames=8,
            fps=8,
            steps=10,
            guidance=9.0,
            seed=i,
            width=256,
            height=256,
            input_sha256=SHA,
            upload_limit_bytes=UPLOAD_LIMIT,
            status=JobStatus.QUEUED,
            priority=0,
            round=i // users,
            attempt=0,
            max_attempts=3,
            cancel_requested=False,
            progress_step=0,
            progress_total=10,
            phase="queued",
            cost_estimate=cost,
            created_at=now,
        )
        for i in range(count)
    ]
    await session.execute(insert(Job), rows)


def sqlite_write_lock_free(path: str) -> bool:
    """Whether another process could take the SQLite database's write lock right now (no waiting)."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        return False
    finally:
        other.close()
