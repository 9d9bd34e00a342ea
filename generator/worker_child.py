"""The supervisor's child process: its environment, starting it, and stopping it within the grace period.

The worker is started as ``sys.executable -m generator.worker`` through ``asyncio.create_subprocess_exec``: a fresh
interpreter, which is what multiprocessing's ``spawn`` start method gives (CUDA is not fork-safe, design.md
section 4) without its costs here: nothing has to be pickled, the parent's event loop, sockets and (in the bot)
discord.py state are never inherited, ``await proc.wait()`` fits the bot's event loop, and the supervised command
is exactly the one an operator runs by hand in ``WORKER=external`` mode, so there is one code path. The child gets
its own session (``start_new_session``): a Ctrl-C in the terminal reaches only the supervisor, which then stops the
child gracefully. The child is told our pid (``I2V_PARENT_PID``) and stops itself if we disappear, so a crashed bot
never leaves a second worker on the GPU; it is told the grace period (``I2V_GRACE_SECONDS``) the supervisor will
honour, so both agree on when a job is given back; and where to write why it cannot start
(``I2V_EXIT_REASON_FILE``, see :mod:`generator.startfailure`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from generator.startfailure import ENV_EXIT_REASON_FILE

log = logging.getLogger("generator.supervisor")

WORKER_MODULE = "generator.worker"
CHILD_ENV_WITHHELD = frozenset({"DISCORD_TOKEN"})  # the parent's variables the worker child does not inherit
GIVE_BACK_ALLOWANCE_S = 8.0  # seconds after the grace period for the step in progress, the give-back and the exit


def child_env(
    *,
    database_url: str,
    model: str,
    output_dir: Path,
    worker_id: str,
    restarts: int,
    grace_s: float,
    reason_file: Path,
    extra_env: Mapping[str, str],
) -> dict[str, str]:
    """The child's environment: ours without the bot's secrets, ``extra_env``, then what the supervisor fixes."""
    # The worker never talks to Discord: keep the bot's secrets out of its environment (and its crash dumps).
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_WITHHELD}
    env.update(extra_env)
    env.update(
        {
            "DATABASE_URL": database_url,
            "I2V_MODEL": model,
            "OUTPUT_DIR": str(output_dir),
            "WORKER_ID": worker_id,
            "I2V_PARENT_PID": str(os.getpid()),
            "I2V_WORKER_RESTARTS": str(restarts),
            "I2V_GRACE_SECONDS": f"{grace_s:g}",
            ENV_EXIT_REASON_FILE: str(reason_file),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


async def spawn(
    python: str, args: Sequence[str], env: Mapping[str, str], output: IO[bytes] | None
) -> asyncio.subprocess.Process:
    """Start ``python -m generator.worker *args`` in its own session; ``output``: a file for its stdout and
    stderr (None: ours)."""
    return await asyncio.create_subprocess_exec(
        python or sys.executable,
        "-m",
        WORKER_MODULE,
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        start_new_session=True,
    )


async def terminate(
    proc: asyncio.subprocess.Process, grace_s: float, allowance_s: float = GIVE_BACK_ALLOWANCE_S
) -> tuple[int, bool]:
    """Stop the child within the grace period; returns (exit code, whether it had to be killed).

    SIGTERM: the worker stops claiming, and its job may go on for ``grace_s`` seconds (the worker knows the same
    value). When ``grace_s`` has passed, a second SIGTERM tells it to give the job back at its next step; SIGKILL
    comes ``allowance_s`` later if it still runs.
    """
    for wait_s in (grace_s, allowance_s):
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return await asyncio.wait_for(proc.wait(), timeout=wait_s), False
        except TimeoutError:
            pass
    log.warning("worker pid %d did not stop within %.1f s; killing it", proc.pid, grace_s + allowance_s)
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    return await proc.wait(), True
