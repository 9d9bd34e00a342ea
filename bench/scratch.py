"""What the store benchmarks share: a throwaway migrated PostgreSQL database, and the job request they enqueue."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from generator.params import STEPS_RANGE, GenerationParams
from jobs.admission import NewJob
from jobs.db import make_engine, migrate
from jobs.models import JobSource

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
"""The PostgreSQL server a benchmark uses when PG_TEST_URL names none."""
IMAGE = b"bench input image"  # the store keeps one copy: every bench job names the same image
SHA = hashlib.sha256(IMAGE).hexdigest()
UPLOAD_LIMIT_BYTES = 10 << 20  # Discord's default upload cap


def bench_request(
    user_id: int, seed: int, *, steps: int = 10, cost: float = 1.0, upload_limit_bytes: int = UPLOAD_LIMIT_BYTES
) -> NewJob:
    """A 512p, 16-frame request for ``IMAGE`` of ``cost`` GPU-seconds, with ``steps`` clamped to the steps range."""
    return NewJob(
        user_id=user_id,
        channel_id=1,
        guild_id=1,
        source=JobSource.SLASH,
        params=GenerationParams(
            prompt="bench",
            negative_prompt="",
            resolution="512p",
            frames=16,
            fps=8,
            steps=min(max(steps, STEPS_RANGE[0]), STEPS_RANGE[1]),
            guidance=9.0,
            seed=seed,
        ),
        width=512,
        height=512,
        input_sha256=SHA,
        upload_limit_bytes=upload_limit_bytes,
        cost_estimate=cost,
    )


@asynccontextmanager
async def scratch_database(server: str, prefix: str = "i2v_bench") -> AsyncIterator[str]:
    """A migrated database (named ``prefix`` and a random suffix) on ``server``, an async PostgreSQL URL; yields
    its URL and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        try:
            await migrate(url)
            yield url
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
