"""Fixtures for the worker tests: a pool of worker processes that never outlives its test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker.workerharness import WorkerPool


@pytest.fixture
def worker_pool(tmp_path: Path) -> Iterator[WorkerPool]:
    """Start workers with ``worker_pool.start(env, *args)``; any still running at the end is killed and fails the
    test."""
    pool = WorkerPool(tmp_path / "logs")
    yield pool
    leftovers = pool.cleanup()
    assert not leftovers, f"worker processes still running after the test: {leftovers}"
