"""The migration that moves the bytes into the store, run on real rows of the previous schema (path-based): a
queued job keeps its input, an undelivered video is kept, a job whose file is gone says so; on both back ends."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from jobs.blobs import DATABASE_BLOBS
from jobs.db import make_engine, make_sessionmaker, migrate, run_alembic
from jobs.models import InputImage, Job, JobPhase, JobStatus, QuotaLedger
from jobs.transitions import claim_next_job

PREVIOUS_HEAD = "0001"


def _row(job_id: int, status: str, input_path: str, sha: str, **extra: object) -> dict[str, object]:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    row: dict[str, object] = dict(
        id=job_id,
        user_id=40 + job_id,
        guild_id=1,
        channel_id=2,
        source="slash",
        prompt="p",
        negative_prompt="",
        resolution="256p",
        frames=8,
        fps=8,
        steps=10,
        guidance=9.0,
        seed=job_id,
        width=320,
        height=256,
        input_path=input_path,
        input_sha256=sha,
        status=status,
        priority=0,
        round=0,
        attempt=0,
        max_attempts=3,
        cancel_requested=False,
        progress_step=0,
        progress_total=10,
        phase="queued",
        cost_estimate=5.0,
        created_at=now,
        upload_limit_bytes=10 << 20,
        output_path=None,
        finished_at=None,
        delivered_at=None,
    )
    row.update(extra)
    return row


async def test_path_based_rows_move_into_the_store(
    empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths were relative to the bot's working directory
    inputs = tmp_path / "data" / "inputs"
    inputs.mkdir(parents=True)
    images = {name: f"image {name}".encode() for name in ("a", "b")}
    shas = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
    for name, data in images.items():
        (inputs / shas[name]).write_bytes(data)
    (tmp_path / "outputs").mkdir()
    video = b"\x00\x00\x00\x18ftypmp42 an undelivered video"
    (tmp_path / "outputs" / "video_20261130_120000_2.mp4").write_bytes(video)
    finished = datetime(2026, 11, 30, 12, 5, tzinfo=UTC)
    rows = [
        _row(1, "queued", f"data/inputs/{shas['a']}", shas["a"]),  # relative path
        _row(
            2,
            "succeeded",
            str(inputs / shas["a"]),
            shas["a"],
            attempt=1,
            phase="done",
            finished_at=finished,
            output_path="outputs/video_20261130_120000_2.mp4",
            output_bytes=len(video),
        ),  # undelivered
        _row(3, "queued", str(inputs / shas["b"]), shas["b"], phase="weird-old-phase"),
        _row(4, "queued", "data/inputs/" + "f" * 64, "f" * 64),  # its file is gone
        _row(
            5,
            "succeeded",
            str(inputs / shas["b"]),
            shas["b"],
            attempt=1,
            phase="done",
            finished_at=finished,
            delivered_at=finished + timedelta(seconds=3),
            output_path="outputs/gone.mp4",
        ),  # file removed by hand
    ]
    await run_alembic(empty_db_url, "upgrade", PREVIOUS_HEAD)
    engine = make_engine(empty_db_url)
    try:
        async with engine.begin() as conn:
            names = ", ".join(rows[0])
            values = ", ".join(f":{key}" for key in rows[0])
            sqlite = engine.dialect.name == "sqlite"
            for row in rows:
                params = {
                    k: (v.replace(tzinfo=None) if sqlite and isinstance(v, datetime) else v) for k, v in row.items()
                }
                await conn.execute(text(f"INSERT INTO jobs ({names}) VALUES ({values})"), params)
                await conn.execute(
                    text(
                        "INSERT INTO quota_ledger (user_id, job_id, kind, amount, created_at) "
                        "VALUES (:u, :j, 'reserve', 5.0, :t)"
                    ),
                    {"u": row["user_id"], "j": row["id"], "t": params["created_at"]},
                )
        await migrate(empty_db_url)
        await run_alembic(empty_db_url, "check")
        sessions = make_sessionmaker(engine)
        async with sessions() as s:
            jobs = {i: await s.get_one(Job, i) for i in range(1, 6)}
            refs = {r.sha256: r.refs for r in (await s.execute(select(InputImage.sha256, InputImage.refs))).all()}
            ledger = await s.scalar(select(func.count()).select_from(QuotaLedger))
            stored_a = await DATABASE_BLOBS.read_input(s, shas["a"])
            stored_b = await DATABASE_BLOBS.read_input(s, shas["b"])
            video_2 = await DATABASE_BLOBS.read_video(s, 2)
            video_5 = await DATABASE_BLOBS.read_video(s, 5)
        assert (stored_a, stored_b, video_2, video_5) == (images["a"], images["b"], video, None)
        assert refs == {shas["a"]: 2, shas["b"]: 2}
        assert ledger == len(rows)  # rewriting the jobs table must not cascade into the ledger
        assert [jobs[i].input_released_at is None for i in range(1, 6)] == [True, True, True, False, True]
        assert jobs[3].phase == JobPhase.QUEUED and jobs[2].phase == JobPhase.DONE
        assert jobs[2].status == JobStatus.SUCCEEDED and jobs[2].delivered_at is None and jobs[2].releases == 0
        async with sessions() as s, s.begin():  # the queued job runs on: a worker finds its input in the store
            claimed = await claim_next_job(s, "w1", lease_seconds=60)
            assert claimed is not None and claimed.id == 1
            assert await DATABASE_BLOBS.read_input(s, claimed.input_sha256) == images["a"]
    finally:
        await engine.dispose()
