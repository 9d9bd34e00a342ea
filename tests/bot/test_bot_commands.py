"""``python -m bot --help | check | backup | prune`` (and the other commands' --help) as a user runs them: a real
subprocess, real SQLite, the real tiny model folder; exit status and the exact lines it prints."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from config.catalog import read_by
from jobs.admission import enqueue_job
from jobs.db import make_engine, make_sessionmaker
from jobs.models import Job, JobVideo, utcnow
from jobs.transitions import claim_next_job, finish_job, mark_delivered
from tests.jobs.storehelpers import GENEROUS, IMAGE, SHA, new_job

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 120
PREFIXES = ("DISCORD_", "I2V_", "LOG_", "OPERATOR_", "ADMIN_", "QUOTA_", "WEB_", "RETENTION_", "WORKER")
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


def _clean_env(**settings: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(PREFIXES) and k not in ("DATABASE_URL", "OUTPUT_DIR", "DATA_DIR")
    }
    env.update({"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}, **settings)
    return env


def _run(args: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=_clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


# A model folder that is not the tiny model needs a GPU: with the embedded worker, check asks about one (and finds
# none here). Tests about the model files alone check a bot whose workers run elsewhere.
MODELS_ONLY = {"WORKER": "external"}


def _good(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": sqlite_url,
        "I2V_MODEL": "tiny",
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "DATA_DIR": str(tmp_path / "data"),
    }


def _problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    lines = result.stderr.splitlines()
    assert all(line.startswith("i2v-bot: ") for line in lines), result.stderr
    return [line.removeprefix("i2v-bot: ") for line in lines]


# --- --help --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "process"),
    [("bot", "bot"), ("generator.worker", "worker"), ("generator", "cli"), ("generator.supervisor", "supervisor")],
)
def test_help_exits_0_and_lists_every_setting_the_command_reads(tmp_path: Path, module: str, process: str) -> None:
    result = _run([module, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {
        line.split()[0]
        for line in result.stdout.splitlines()
        if line.startswith("  ") and line.split() and line.split()[0].isupper()
    }
    expected = {s.name for s in read_by(process) if not s.internal}
    assert expected <= listed, f"missing from --help: {expected - listed}"
    assert not (tmp_path / "data").exists() and not (tmp_path / "outputs").exists()  # nothing started


def test_bot_help_names_the_subcommands(tmp_path: Path) -> None:
    result = _run(["bot", "--help"], tmp_path)
    for command in ("run", "check", "backup", "prune"):
        assert f"    {command} " in result.stdout


# --- check ---------------------------------------------------------------------------------------------------


def test_check_passes_on_a_good_configuration(tmp_path: Path, sqlite_url: str) -> None:
    result = _run(["bot", "check"], tmp_path, **_good(tmp_path, sqlite_url))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "at head (revision" in result.stdout and "I2V_MODEL=tiny: its config files are usable" in result.stdout
    assert (
        "I2V_MODELS: i2vgenxl (I2VGen-XL), wan22-5b (Wan 2.2 (5B)), ltxv (LTX-Video (fast)); the default is "
        "I2VGen-XL" in result.stdout
    )  # tiny: every model
    assert f"OUTPUT_DIR={tmp_path / 'outputs'}: can be created" in result.stdout
    assert not (tmp_path / "outputs").exists(), "check must not create anything"


def test_check_reads_every_enabled_model_from_its_own_setting(tmp_path: Path, sqlite_url: str) -> None:
    wan = tmp_path / "wan"
    (wan / "transformer").mkdir(parents=True)
    (wan / "model_index.json").write_text(
        '{"_class_name": "WanImageToVideoPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}'
    )
    (wan / "transformer" / "config.json").write_text("{}")
    env = {
        **_good(tmp_path, sqlite_url),
        "I2V_MODEL": "ali-vilab/i2vgen-xl",
        "I2V_MODELS": "wan22-5b,ltxv",
        "I2V_MODEL_WAN": str(wan),
        "I2V_MODEL_LTX": str(tmp_path / "no-ltx-here"),
        **MODELS_ONLY,
    }
    result = _run(["bot", "check"], tmp_path, **env)
    assert result.returncode == 2
    assert _problems(result) == [f"I2V_MODEL_LTX={str(tmp_path / 'no-ltx-here')!r}: there is no such folder"]
    assert f"Wan 2.2 (5B): I2V_MODEL_WAN={wan}: its config files are usable" in result.stdout
    assert "Wan 2.2 (5B) needs GPU memory: 24 GiB with model offloading" in result.stdout
    assert "LTX-Video (fast) needs GPU memory: about 10 GiB" in result.stdout
    assert "I2V_MODEL=" not in result.stdout  # I2VGen-XL is not enabled: its source is not checked


def test_check_asks_a_generator_process_about_the_gpu(tmp_path: Path, sqlite_url: str) -> None:
    """The real model's config files in a local folder, no weights, on this CPU-only machine: one line saying that
    no CUDA device is usable, exit 2; with I2V_DEVICE=cpu, a warning and exit 0."""
    model = tmp_path / "i2vgen-xl"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text(
        '{"_class_name": "I2VGenXLPipeline", "unet": ["diffusers", "I2VGenXLUNet"]}'
    )
    (model / "unet" / "config.json").write_text("{}")
    env = {**_good(tmp_path, sqlite_url), "I2V_MODEL": str(model)}
    refused = _run(["bot", "check"], tmp_path, **env)
    assert refused.returncode == 2, refused.stderr
    (problem,) = _problems(refused)
    assert problem.startswith("no CUDA device is usable: this torch") and "I2V_DEVICE=cpu" in problem, problem
    assert "(CPU only)" in refused.stdout  # the torch build, from the generator process
    warned = _run(["bot", "check"], tmp_path, **env, I2V_DEVICE="cpu")
    assert warned.returncode == 0, warned.stderr
    (warning,) = _problems(warned)
    assert warning.startswith(f"warning: I2V_DEVICE=cpu: I2V_MODEL={model} runs on the CPU"), warning


def test_check_names_each_bad_setting_on_its_own_line(tmp_path: Path, sqlite_url: str) -> None:
    env = {**_good(tmp_path, sqlite_url), "QUOTA_MAX_PENDING": "two", "LOG_LEVEL": "LOUD", "I2V_COMPILE": "maybe"}
    result = _run(["bot", "check"], tmp_path, **env)
    assert result.returncode == 2
    assert _problems(result) == [
        "I2V_COMPILE='maybe' is not a boolean (use true or false)",  # declaration order
        "QUOTA_MAX_PENDING='two' is not a whole number",
        "LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR",
    ]


def test_check_reports_an_unreachable_database(tmp_path: Path, sqlite_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"postgresql+asyncpg://i2v:secret-pw@127.0.0.1:{port}/i2v"
    result = _run(["bot", "check"], tmp_path, **{**_good(tmp_path, sqlite_url), "DATABASE_URL": url})
    assert result.returncode == 2
    (line,) = _problems(result)
    assert line.startswith(f"DATABASE_URL=postgresql+asyncpg://i2v:***@127.0.0.1:{port}/i2v: cannot be opened: ")
    assert "secret-pw" not in result.stdout + result.stderr


def test_check_reports_a_database_newer_than_the_code_and_accepts_a_missing_one(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = sqlite_url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dcafe0001'")
    result = _run(["bot", "check"], tmp_path, **_good(tmp_path, sqlite_url))
    assert result.returncode == 2
    (line,) = _problems(result)
    assert line.startswith(f"DATABASE_URL={sqlite_url}: ahead (revision f00dcafe0001 is newer than this code")
    missing = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'i2v.sqlite3'}"
    result = _run(["bot", "check"], tmp_path, **{**_good(tmp_path, sqlite_url), "DATABASE_URL": missing})
    assert result.returncode == 0, result.stderr
    assert "not created" in result.stdout and not (tmp_path / "new").exists()


def test_check_reports_a_missing_model_folder_and_bad_model_config(tmp_path: Path, sqlite_url: str) -> None:
    result = _run(
        ["bot", "check"], tmp_path, **{**_good(tmp_path, sqlite_url), "I2V_MODEL": "/no/such/model", **MODELS_ONLY}
    )
    assert result.returncode == 2
    assert _problems(result) == ["I2V_MODEL='/no/such/model': there is no such folder"]
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "scheduler").mkdir()
    (model / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "I2VGenXLPipeline",
                "unet": ["diffusers", "I2VGenXLUNet"],
                "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "DDIMScheduler"],
                "text_encoder": [None, None],
            }
        )
    )
    (model / "unet" / "config.json").write_text("{not json")
    (model / "scheduler" / "scheduler_config.json").write_text("{}")
    result = _run(["bot", "check"], tmp_path, **{**_good(tmp_path, sqlite_url), "I2V_MODEL": str(model), **MODELS_ONLY})
    assert result.returncode == 2
    problems = _problems(result)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"I2V_MODEL={str(model)!r}: unet/config.json is not valid JSON: ")
    assert problems[1] == f"I2V_MODEL={str(model)!r}: the vae component's folder is missing"


def test_check_passes_on_a_saved_tiny_model_folder(tmp_path: Path, sqlite_url: str) -> None:
    from generator.models.tiny import build_tiny_i2vgenxl

    # mypy resolves diffusers' lazy export to its placeholder class; the real pipeline is a DiffusionPipeline
    build_tiny_i2vgenxl().save_pretrained(tmp_path / "tiny-model")  # type: ignore[attr-defined]  # see above
    result = _run(
        ["bot", "check"],
        tmp_path,
        **{**_good(tmp_path, sqlite_url), "I2V_MODEL": str(tmp_path / "tiny-model"), **MODELS_ONLY},
    )
    assert result.returncode == 0, result.stderr


def test_check_reports_an_unwritable_output_folder(tmp_path: Path, sqlite_url: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    env = {**_good(tmp_path, sqlite_url), "OUTPUT_DIR": str(blocker / "outputs")}
    result = _run(["bot", "check"], tmp_path, **env)
    assert result.returncode == 2
    assert _problems(result) == [f"OUTPUT_DIR={blocker / 'outputs'}: {blocker} is a file, not a folder"]


def test_check_lists_every_problem_at_once(tmp_path: Path, sqlite_url: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    env = {
        **_good(tmp_path, sqlite_url),
        "WEB_PORT": "99999",
        "I2V_MODEL": "./missing-model",
        "DATA_DIR": str(blocker),
        "DISCORD_API_BASE": "ftp://nowhere",
        **MODELS_ONLY,
    }
    result = _run(["bot", "check"], tmp_path, **env)
    assert result.returncode == 2
    assert _problems(result) == [
        "WEB_PORT='99999' is not a TCP port (0-65535)",
        "DISCORD_API_BASE must be an absolute http:// or https:// URL, got 'ftp://nowhere'",
        "I2V_MODEL='./missing-model': there is no such folder",
        f"DATA_DIR={blocker}: {blocker} is a file, not a folder",
    ]


def test_check_of_a_hub_model_without_network_fails_fast_with_one_line(tmp_path: Path, sqlite_url: str) -> None:
    env = {
        **_good(tmp_path, sqlite_url),
        "I2V_MODEL": "someone/not-cached-model",
        "HF_HOME": str(tmp_path / "hf"),
        **MODELS_ONLY,
    }
    result = _run(["bot", "check"], tmp_path, **env)
    assert result.returncode == 2
    assert _problems(result) == [
        f"I2V_MODEL='someone/not-cached-model': not in the Hugging Face cache "
        f"({tmp_path / 'hf' / 'hub'}) and HF_HUB_OFFLINE is set"
    ]


# --- backup --------------------------------------------------------------------------------------------------


def test_backup_while_a_writer_is_open_holds_the_committed_rows(tmp_path: Path, sqlite_url: str) -> None:
    path = sqlite_url.split(":///", 1)[1]
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        writer.execute("PRAGMA wal_autocheckpoint=0")  # the rows stay in the -wal file: a file copy would miss them
        writer.execute("CREATE TABLE backup_probe (n INTEGER)")
        writer.executemany("INSERT INTO backup_probe VALUES (?)", [(n,) for n in range(500)])
        writer.execute("BEGIN IMMEDIATE")  # a writer mid-transaction while the backup runs
        writer.execute("INSERT INTO backup_probe VALUES (-1)")
        dest = tmp_path / "backups"
        dest.mkdir()
        result = _run(["bot", "backup", str(dest)], tmp_path, DATABASE_URL=sqlite_url)
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert result.returncode == 0, result.stderr
    (copy,) = dest.iterdir()
    assert result.stdout.startswith(f"backed up the job store to {copy} (")
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT count(*), min(n) FROM backup_probe").fetchone() == (500, 0)  # not the open one
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    again = _run(["bot", "backup", str(copy)], tmp_path, DATABASE_URL=sqlite_url)
    assert again.returncode == 1 and _problems(again) == [
        f"{copy} already exists; choose another name (a backup never overwrites)"
    ]


def test_backup_of_postgresql_says_pg_dump(tmp_path: Path) -> None:
    result = _run(["bot", "backup", str(tmp_path / "x")], tmp_path, DATABASE_URL="postgresql://u@db/i2v")
    assert result.returncode == 1
    (line,) = _problems(result)
    assert line.startswith("DATABASE_URL is postgresql: back it up with pg_dump")
    assert not (tmp_path / "x").exists()


# --- prune ---------------------------------------------------------------------------------------------------


async def _expired_delivered_job(url: str) -> int:
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as s:
            job_id = (await enqueue_job(s, new_job(1, input_sha256=SHA), GENEROUS, image=IMAGE)).id
        async with sessions.begin() as s:
            claimed = await claim_next_job(s, "w1", lease_seconds=60)
            assert claimed is not None and claimed.id == job_id
            assert await finish_job(s, job_id, claimed.attempt, worker_id="w1", video=VIDEO, gpu_seconds=1.0)
        async with sessions.begin() as s:
            assert await mark_delivered(s, job_id, result_message_id=1)
            await s.execute(update(Job).where(Job.id == job_id).values(finished_at=utcnow() - timedelta(days=40)))
        return job_id
    finally:
        await engine.dispose()


async def _videos(url: str) -> set[int]:
    engine = make_engine(url, read_only=True)
    try:
        async with make_sessionmaker(engine)() as s:
            return set(await s.scalars(select(JobVideo.job_id)))
    finally:
        await engine.dispose()


def test_prune_removes_an_expired_jobs_bytes_and_disk_copy(tmp_path: Path, sqlite_url: str) -> None:
    job_id = asyncio.run(_expired_delivered_job(sqlite_url))
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    copy = outputs / f"video_20200101_000000_{job_id}.mp4"
    copy.write_bytes(VIDEO)
    assert asyncio.run(_videos(sqlite_url)) == {job_id}
    env = {"DATABASE_URL": sqlite_url, "OUTPUT_DIR": str(outputs), "RETENTION_DAYS": "30"}
    result = _run(["bot", "prune"], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pruned the stored image and video of 1 job(s) finished before ")
    assert result.stdout.endswith(f" UTC: {job_id}; removed 1 disk copy from {outputs}\n")
    assert asyncio.run(_videos(sqlite_url)) == set() and not copy.exists()
    again = _run(["bot", "prune"], tmp_path, **env)
    assert again.returncode == 0 and again.stdout.startswith("nothing to prune: ")


def test_check_accepts_a_database_one_migration_behind(tmp_path: Path, sqlite_url: str) -> None:
    from jobs.db import run_alembic

    asyncio.run(run_alembic(sqlite_url, "downgrade", "-1"))
    result = _run(["bot", "check"], tmp_path, **_good(tmp_path, sqlite_url))
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("ok: DATABASE_URL=")]
    assert line.startswith(f"ok: DATABASE_URL={sqlite_url}: behind (revision ") and "migrated to " in line


def test_check_warns_when_the_page_listens_beyond_this_machine_without_its_public_address(
    tmp_path: Path,
    sqlite_url: str,
) -> None:
    result = _run(["bot", "check"], tmp_path, **_good(tmp_path, sqlite_url), WEB_HOST="0.0.0.0")
    assert result.returncode == 0, result.stderr  # a warning, not a problem
    (line,) = _problems(result)
    assert line.startswith(
        "warning: WEB_HOST=0.0.0.0 accepts connections from other machines but WEB_PUBLIC_URL is not set"
    ), line
    result = _run(
        ["bot", "check"],
        tmp_path,
        **_good(tmp_path, sqlite_url),
        WEB_HOST="0.0.0.0",
        WEB_PUBLIC_URL="https://i2v.example.org",
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "ok: WEB_PUBLIC_URL=https://i2v.example.org: links and the Origin check use it" in result.stdout
    for host in ("127.0.0.1", "::1", "localhost"):
        result = _run(["bot", "check"], tmp_path, **_good(tmp_path, sqlite_url), WEB_HOST=host)
        assert result.returncode == 0 and result.stderr == "", (host, result.stderr)
