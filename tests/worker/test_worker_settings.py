"""Settings, fault-hook parsing and supervisor arguments: bad values are refused with the variable's name (no model)."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from config.reader import SettingsError
from generator.faults import FaultConfigError, FaultPlan
from generator.jobrun import is_fatal_cuda_error
from generator.startfailure import describe, read_exit_reason, report_start_failure
from generator.supervisor import WorkerSupervisor
from generator.supervisor_state import RestartPolicy, next_backoff
from generator.worker_child import child_env
from generator.worker_settings import EXIT_CONFIG, GRACE_S, LEASE_S, WorkerSettings
from jobs.db import DEFAULT_DATABASE_URL
from tests.worker.workerharness import REPO_ROOT


def test_settings_defaults_and_overrides() -> None:
    defaults = WorkerSettings.from_env({})
    assert defaults.database_url == DEFAULT_DATABASE_URL and defaults.model == "ali-vilab/i2vgen-xl"
    assert defaults.output_dir == Path("outputs") and defaults.lease_s == LEASE_S and defaults.grace_s == GRACE_S
    assert defaults.worker_id  # host-pid
    custom = WorkerSettings.from_env(
        {
            "DATABASE_URL": "sqlite+aiosqlite:///x.db",
            "I2V_MODEL": "tiny",
            "OUTPUT_DIR": "/tmp/out",
            "WORKER_ID": "gpu0",
            "I2V_LEASE_SECONDS": "12.5",
            "I2V_PARENT_PID": "1",
        }
    )
    assert (custom.model, custom.worker_id, custom.lease_s, custom.parent_pid) == ("tiny", "gpu0", 12.5, 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("I2V_LEASE_SECONDS", "soon"),
        ("I2V_LEASE_SECONDS", "0.5"),
        ("I2V_GRACE_SECONDS", "-1"),
        ("I2V_POLL_INTERVAL_S", "nan"),
        ("I2V_PARENT_PID", "abc"),
    ],
)
def test_bad_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        WorkerSettings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("I2V_FAULT_SLEEP_PER_STEP", "fast"),
        ("I2V_FAULT_OOM_AT_STEP", "0"),
        ("I2V_FAULT_OOM_TIMES", "3:x"),
        ("I2V_FAULT_JOB_IDS", "1,two"),
        ("I2V_FAULT_CUDA_AT_STEP", "4:0"),
    ],
)
def test_bad_fault_hook_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(FaultConfigError, match=name):
        FaultPlan.from_env({name: value})


def test_fault_hooks_are_off_unless_set() -> None:
    assert not FaultPlan.from_env({}).active
    plan = FaultPlan.from_env({"I2V_FAULT_OOM_AT_STEP": "7:2,9:4", "I2V_FAULT_OOM_TIMES": "2"})
    assert plan.active and plan.oom_at_step == {7: 2, 9: 4} and plan.oom_times == 2


def test_worker_process_exits_2_on_a_bad_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "I2V_LEASE_SECONDS": "forever", "OUTPUT_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "generator.worker"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == EXIT_CONFIG
    assert result.stderr == "i2v-worker: I2V_LEASE_SECONDS='forever' is not a number\n"


def test_cuda_error_classification() -> None:
    import torch

    assert is_fatal_cuda_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not is_fatal_cuda_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_fatal_cuda_error(RuntimeError("shape mismatch"))
    assert not is_fatal_cuda_error(ValueError("CUDA in a value error is not a device error"))


def test_output_filename_follows_the_seed_naming() -> None:
    from datetime import datetime

    from jobs.copies import output_filename

    when = datetime(2026, 11, 24, 9, 5, 7, tzinfo=UTC)
    assert output_filename(42, when) == "video_20261124_090507_42.mp4"


def test_backoff_doubles_up_to_the_cap() -> None:
    waits = [0.0]
    for _ in range(6):
        waits.append(next_backoff(waits[-1], initial_s=1.0, max_s=10.0))
    assert waits[1:] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"database_url": ""}, "database_url"),
        ({"model": " "}, "model"),
        ({"stop_grace_s": -1.0}, "stop_grace_s"),
        ({"state_poll_interval_s": 0.0}, "state_poll_interval_s"),
        ({"hang_timeout_s": float("inf")}, "hang_timeout_s"),
    ],
)
def test_supervisor_refuses_bad_arguments(kwargs: dict, name: str) -> None:
    args: dict[str, Any] = {"database_url": "sqlite+aiosqlite:///x.db", "model": "tiny", "output_dir": "outputs"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        WorkerSupervisor(**args)


async def test_supervisor_state_starts_stopped_and_stop_is_safe_before_start() -> None:
    supervisor = WorkerSupervisor("sqlite+aiosqlite:///x.db", "tiny", "outputs", worker_id="w")
    assert supervisor.state.phase == "stopped" and supervisor.state.pid is None and supervisor.state.restarts == 0
    assert supervisor.state.describe() == "stopped (0 restarts)"
    assert await supervisor.stop(1) is None
    assert not supervisor.running


async def test_supervisor_start_reports_a_worker_that_cannot_be_started(sqlite_url: str, tmp_path: Path) -> None:
    supervisor = WorkerSupervisor(sqlite_url, "tiny", tmp_path / "out", python=str(tmp_path / "no-such-python"))
    with pytest.raises(FileNotFoundError, match="no-such-python"):
        await supervisor.start()
    assert await supervisor.stop(1) is None


def test_supervised_worker_does_not_inherit_the_discord_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token-value")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    env = child_env(
        database_url=DEFAULT_DATABASE_URL,
        model="tiny",
        output_dir=tmp_path,
        worker_id="w",
        restarts=0,
        grace_s=12.5,
        reason_file=tmp_path / "reason",
        extra_env={"I2V_GRACE_SECONDS": "99"},
    )
    assert "DISCORD_TOKEN" not in env
    assert "secret-token-value" not in env.values()
    assert env["LOG_LEVEL"] == "DEBUG" and env["I2V_MODEL"] == "tiny"
    # the supervisor's grace period is the child's: both agree on when a job is given back
    assert env["I2V_GRACE_SECONDS"] == "12.5" and env["I2V_EXIT_REASON_FILE"] == str(tmp_path / "reason")


def test_restart_policy_backs_off_then_retries_slowly_once_unavailable() -> None:
    policy = RestartPolicy(backoff_initial_s=1, backoff_max_s=8, unavailable_after=3, unavailable_retry_s=100)
    waits, wait = [], 0.0
    for failures in range(1, 9):  # failed starts in a row
        wait = policy.next_wait(wait, ran_s=5, start_failures=failures)
        waits.append(wait)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 100]  # fast up to the cap, then the long cap once unavailable
    assert not policy.unavailable(2) and policy.unavailable(3)
    # crashes of a worker that had started keep the short cap, and a long run resets the back-off
    assert policy.next_wait(8, ran_s=5, start_failures=0) == 8
    assert policy.next_wait(8, ran_s=policy.backoff_reset_after_s, start_failures=0) == 1


def test_restart_policy_settings_are_checked() -> None:
    policy = RestartPolicy.from_env(
        {
            "I2V_RESTART_BACKOFF_SECONDS": "0.2",
            "I2V_RESTART_BACKOFF_MAX_SECONDS": "3",
            "I2V_UNAVAILABLE_AFTER_FAILURES": "2",
            "I2V_UNAVAILABLE_RETRY_SECONDS": "30",
        }
    )
    assert (policy.backoff_initial_s, policy.backoff_max_s, policy.unavailable_after, policy.unavailable_retry_s) == (
        0.2,
        3,
        2,
        30,
    )
    assert RestartPolicy.from_env({}) == RestartPolicy()
    for name, raw in (
        ("I2V_RESTART_BACKOFF_SECONDS", "soon"),
        ("I2V_UNAVAILABLE_RETRY_SECONDS", "-1"),
        ("I2V_UNAVAILABLE_AFTER_FAILURES", "0"),
        ("I2V_UNAVAILABLE_AFTER_FAILURES", "2.5"),
    ):
        with pytest.raises(ValueError, match=name):
            RestartPolicy.from_env({name: raw})
    with pytest.raises(ValueError, match="unavailable_after"):
        RestartPolicy(unavailable_after=0)


def test_a_failed_start_is_one_line_for_the_supervisor(tmp_path: Path) -> None:
    """The worker, told where, writes the reason there (one line) instead of logging it; the supervisor reads it."""
    reason_file = tmp_path / "reason"
    env = {"I2V_EXIT_REASON_FILE": str(reason_file)}
    log = logging.getLogger("test.startfailure")
    try:
        raise OSError("first line\nsecond line")
    except OSError as error:
        assert (
            report_start_failure(log, f"the model could not be loaded: {describe(error)}", 5, error=error, env=env) == 5
        )
    assert read_exit_reason(reason_file) == "the model could not be loaded: first line"
    assert not reason_file.exists() and read_exit_reason(reason_file) is None
