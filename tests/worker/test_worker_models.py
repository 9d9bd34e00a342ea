"""One real worker process, every tiny model enabled, a queue alternating between two models from several users:
the worker holds one model at a time, switches as the claim's bound allows, and counts its switches; a model it
may not load is never claimed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator.video import probe_mp4
from jobs.models import JobStatus
from tests.worker.workerharness import Db, WorkerPool, enqueue_jobs, make_input, worker_env

pytestmark = pytest.mark.slow

MAX_SKIPS = 1
SMALL = (64, 64)  # px: every model's sizes are multiples of it, and the tiny models run fast at it
PLAN = [("i2vgenxl", 8), ("wan22-5b", 9), ("i2vgenxl", 8), ("wan22-5b", 9), ("i2vgenxl", 8), ("wan22-5b", 9)]


async def test_alternating_models_switch_within_the_bound(_sqlite_template: Path, tmp_path: Path) -> None:
    shutil.copyfile(_sqlite_template, tmp_path / "i2v.sqlite3")
    url = f"sqlite+aiosqlite:///{tmp_path / 'i2v.sqlite3'}"
    image = make_input(tmp_path / "inputs")
    ids: list[int] = []
    for user, (model, frames) in enumerate(PLAN, start=1):  # one job per user: claim order is the queue order
        ids += await enqueue_jobs(url, 1, image, user_id=user, model=model, frames=frames, fps=24, size=SMALL)
    ltx = (await enqueue_jobs(url, 1, image, user_id=99, model="ltxv", frames=9, fps=24, steps=4, size=SMALL))[0]
    pool = WorkerPool(tmp_path / "logs")
    env = worker_env(
        url,
        tmp_path / "outputs",
        WORKER_ID="switcher",
        I2V_MODELS="i2vgenxl,wan22-5b,ltxv",
        WORKER_MODELS="i2vgenxl,wan22-5b",
        MODEL_AFFINITY_MAX_SKIPS=MAX_SKIPS,
    )
    try:
        proc = pool.start(env, "--drain", name="switcher")
        assert await proc.wait(timeout=240) == 0, proc.log()[-3000:]
    finally:
        assert not pool.cleanup()
    db = Db(url)
    try:
        jobs = await db.jobs([*ids, ltx])
        worker = await db.worker("switcher")
        for job_id in ids:
            video = await db.video_file(job_id, tmp_path / "videos")
            assert probe_mp4(video).frames == jobs[job_id].frames
    finally:
        await db.close()
    assert all(jobs[job_id].status == JobStatus.SUCCEEDED for job_id in ids), proc.log()[-3000:]
    started = {job_id: at for job_id in ids if (at := jobs[job_id].started_at) is not None}
    assert started.keys() == set(ids)
    ran = sorted(ids, key=started.__getitem__)
    # the order the bound allows: i2v 1, i2v 3 (passing wan 2 once), wan 2, wan 4, wan 6 (passing i2v 5), i2v 5
    assert ran == [ids[0], ids[2], ids[1], ids[3], ids[5], ids[4]]
    passed_over = {
        job_id: sum(1 for later in ids[ids.index(job_id) + 1 :] if ran.index(later) < ran.index(job_id))
        for job_id in ids
    }
    assert max(passed_over.values()) == MAX_SKIPS
    assert worker is not None and worker.switches == 2 and worker.switch_seconds > 0  # in queue order: 5
    assert worker.loadable_models == ["i2vgenxl", "wan22-5b"]
    # the LTX job: no worker may load it, so it was never claimed
    assert jobs[ltx].status == JobStatus.QUEUED and jobs[ltx].attempt == 0
    assert "switched from i2vgenxl to wan22-5b" in proc.log()
