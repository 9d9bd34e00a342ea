"""A worker's first download of a model, as its registry row carries it (written through ``jobs.workers``): /healthz
says which model and how far, and a queued job of that model says so on the page instead of an estimate."""

from __future__ import annotations

from pathlib import Path

from jobs.queue import find_job
from jobs.workers import record_download, register_worker
from tests.web.inproc import OPERATOR_ID, page

DONE, TOTAL = 1_234_000_000, 5_100_000_000


async def test_healthz_and_a_queued_jobs_status_show_the_download(sqlite_url: str, tmp_path: Path) -> None:
    async with page(sqlite_url, tmp_path) as p:
        member = await p.sign_in(13)
        status, created = await member.create_job()
        assert status == 201, created
        async with p.server.sessions() as session:
            job = await find_job(session, created["id"])
            assert job is not None
        model = job.model
        async with p.server.sessions.begin() as session:
            await register_worker(session, "gpu-0", host="gpu-box", pid=4321, model="tiny", loadable_models=[model])
            await record_download(session, "gpu-0", model=model, done_bytes=DONE, total_bytes=TOTAL)
        name = created["model_name"]
        line = f"downloading model {name}: 1.2 of 5.1 GB (24 %)"

        public = await (await p.client.get("/healthz")).json()
        assert public == {"status": "ok", "workers": 1, "downloading": [line]}
        operator = await p.sign_in(OPERATOR_ID)
        detailed = await (await operator.get("/healthz")).json()
        assert detailed["workers"] == [{"id": "gpu-0", "state": "loading", "job": None, "downloading": line}]

        shown = await (await member.get(f"/api/jobs/{job.id}")).json()
        assert shown["status"] == "queued" and shown["eta_seconds"] is None
        assert shown["model_download"] == (
            f"⬇️ The {name} model is downloading for its first use: 1.2 of 5.1 GB "
            "(24 %). This job starts once it has loaded."
        )

        async with p.server.sessions.begin() as session:  # the download is over: the estimate again
            await record_download(session, "gpu-0", model=None)
        shown = await (await member.get(f"/api/jobs/{job.id}")).json()
        assert shown["model_download"] is None
        detailed = await (await operator.get("/healthz")).json()
        assert "downloading" not in detailed["workers"][0]
