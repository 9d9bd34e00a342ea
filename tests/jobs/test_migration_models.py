"""The model-choice migration on real rows of the previous schema, and the migrations' single head."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.script import ScriptDirectory
from sqlalchemy import text

from jobs.db import alembic_config, make_engine, make_sessionmaker, migrate, run_alembic
from jobs.models import GuildSettings, Job, Worker
from jobs.transitions import claim_next_job

PREVIOUS_HEAD = "0008"
MODEL_REVISION = "0009"


def test_the_migrations_have_one_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite:///unused.sqlite3"))
    heads = scripts.get_heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: point the newest migration's down_revision at the other"
    revisions = list(scripts.walk_revisions())
    assert len({r.revision for r in revisions}) == len(revisions)
    assert all(len(r._all_down_revisions) <= 1 for r in revisions), "a merge revision: chain migrations instead"


def _job(job_id: int, status: str, now: datetime) -> dict[str, object]:
    return dict(
        id=job_id,
        user_id=40 + job_id,
        guild_id=1,
        channel_id=2,
        source="slash",
        prompt=f"prompt {job_id}",
        negative_prompt="blurry",
        preset="quick",
        resolution="512p",
        frames=8,
        fps=8,
        steps=30,
        guidance=9.0,
        seed=job_id,
        width=512,
        height=512,
        input_sha256="a" * 64,
        status=status,
        priority=0,
        round=0,
        attempt=0,
        releases=0,
        max_attempts=3,
        cancel_requested=False,
        progress_step=0,
        progress_total=30,
        phase="queued",
        cost_estimate=5.0,
        created_at=now,
        upload_limit_bytes=10 << 20,
        spoiler=False,
    )


async def test_existing_jobs_become_i2vgenxl_jobs(empty_db_url: str) -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    await run_alembic(empty_db_url, "upgrade", PREVIOUS_HEAD)
    engine = make_engine(empty_db_url)
    sqlite = engine.dialect.name == "sqlite"
    stamp = now.replace(tzinfo=None) if sqlite else now
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO input_images (sha256, data, size_bytes, refs, created_at) VALUES (:s, :d, 5, 2, :t)"),
                {"s": "a" * 64, "d": b"image", "t": stamp},
            )
            for row in (_job(1, "queued", now), _job(2, "succeeded", now)):
                names = ", ".join(row)
                values = ", ".join(f":{key}" for key in row)
                params = {k: (stamp if isinstance(v, datetime) else v) for k, v in row.items()}
                await conn.execute(text(f"INSERT INTO jobs ({names}) VALUES ({values})"), params)
            await conn.execute(
                text(
                    "INSERT INTO workers (id, host, pid, state, model, restarts, started_at, last_heartbeat_at, "
                    "jobs_done) "
                    "VALUES ('w-old', 'h', 7, 'idle', 'ali-vilab/i2vgen-xl', 0, :t, :t, 3)"
                ),
                {"t": stamp},
            )
            await conn.execute(
                text(
                    "INSERT INTO guild_settings (guild_id, paused, mention_replies, updated_at) VALUES (1, :f, :f, :t)"
                ),
                {"f": False, "t": stamp},
            )
        await migrate(empty_db_url)
        await run_alembic(empty_db_url, "check")  # the models and the migrated schema agree
        sessions = make_sessionmaker(engine)
        async with sessions() as s:
            jobs = {i: await s.get(Job, i) for i in (1, 2)}
            worker = await s.get(Worker, "w-old")
            guild = await s.get(GuildSettings, 1)
        assert all(job is not None and job.model == "i2vgenxl" for job in jobs.values())
        assert jobs[1] is not None and jobs[1].params.describe() == (
            "quick preset: I2VGen-XL, 512p, 8 frames, 8 fps, 30 steps, guidance 9.0, seed 1"
        )
        assert worker is not None and (
            worker.loadable_models,
            worker.loaded_model,
            worker.switches,
            worker.switch_seconds,
        ) == ([], None, 0, 0.0)
        assert worker.model == "ali-vilab/i2vgen-xl" and worker.jobs_done == 3
        assert guild is not None and guild.models is None  # no server list: every enabled model
        async with sessions() as s, s.begin():  # the queued job runs on as an I2VGen-XL job
            claimed = await claim_next_job(s, "w1", lease_seconds=60)
            assert claimed is not None and claimed.id == 1 and claimed.params.model == "i2vgenxl"
        await run_alembic(empty_db_url, "downgrade", PREVIOUS_HEAD)  # and back: the rows stay
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM jobs"))).scalar_one() == 2
    finally:
        await engine.dispose()
