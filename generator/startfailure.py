"""How a worker process that cannot start says why, in one line (no traceback per attempt).

A supervised worker (``generator.supervisor`` sets ``I2V_EXIT_REASON_FILE``) writes the line to that file and exits
with one of ``START_FAILURE_CODES``; the supervisor reads it, logs it once per attempt, backs off and records it
in the worker registry. A worker run on its own logs the line itself. Either way the traceback is logged at
DEBUG level only (``LOG_LEVEL=DEBUG`` shows it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from generator.worker_settings import EXIT_CONFIG, EXIT_DATABASE, EXIT_MODEL_LOAD

ENV_EXIT_REASON_FILE = "I2V_EXIT_REASON_FILE"
START_FAILURE_CODES = frozenset({EXIT_CONFIG, EXIT_DATABASE, EXIT_MODEL_LOAD})
"""Exit codes of a worker that could not start (as opposed to one that crashed while serving)."""
MAX_REASON_CHARS = 500  # one line, at most this long


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, at most MAX_REASON_CHARS characters."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else "unknown error"
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


def describe(error: BaseException) -> str:
    """An exception as one line: its message, or its type's name when it has none."""
    return one_line(str(error)) if str(error).strip() else type(error).__name__


def report_start_failure(
    log: logging.Logger,
    reason: str,
    code: int,
    *,
    error: BaseException | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Report why this worker cannot start and return ``code`` (the exit status to use)."""
    env = os.environ if env is None else env
    reason = one_line(reason)
    if error is not None:
        log.debug("start failure detail", exc_info=error)
    target = env.get(ENV_EXIT_REASON_FILE, "").strip()
    if target:
        try:
            Path(target).write_text(reason + "\n", encoding="utf-8")
        except OSError as exc:
            log.error("cannot start: %s (and the supervisor's reason file failed: %s)", reason, exc)
        else:
            log.info("cannot start; exiting with status %d (the supervisor reports why)", code)
        return code
    log.error("cannot start: %s", reason)
    return code


def read_exit_reason(path: Path) -> str | None:
    """The line a child wrote to its reason file (then removed), or None when it wrote none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    path.unlink(missing_ok=True)
    return one_line(text) if text.strip() else None
