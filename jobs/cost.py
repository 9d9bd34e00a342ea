"""A job's GPU-seconds cost: the model (linear in pixels x frames x steps plus a fixed overhead), the estimate, and
its calibration from recently measured jobs.

``jobs.admission`` reserves ``estimate_cost`` with each job (from the model ``calibrate`` fits when the request
carries no estimate); ``jobs.quota`` holds the budgets the reservations and charges count against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import Job, JobStatus

DEFAULT_OVERHEAD_SECONDS = 20.0
"""Fixed GPU-seconds per job (text/image encoding, VAE decode start-up) before calibration."""
DEFAULT_SECONDS_PER_UNIT = 8.0e-8
"""GPU-seconds per (pixel x frame x step) before calibration: seed timings on an RTX 4090, fitted."""
CALIBRATION_SAMPLE_JOBS = 50
"""How many of the most recent measured jobs ``calibrate`` fits."""
MIN_CALIBRATION_JOBS = 5
"""Below this many measured jobs (or without spread in size), only the scale is calibrated."""


@dataclass(frozen=True)
class CostModel:
    """cost = overhead_seconds + seconds_per_unit * width * height * frames * steps."""

    overhead_seconds: float = DEFAULT_OVERHEAD_SECONDS
    seconds_per_unit: float = DEFAULT_SECONDS_PER_UNIT
    samples: int = 0


DEFAULT_COST_MODEL = CostModel()


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def cost_units(width: int, height: int, frames: int, steps: int) -> int:
    """The size of a job in pixel x frame x step units."""
    return (
        _positive_int("width", width)
        * _positive_int("height", height)
        * _positive_int("frames", frames)
        * _positive_int("steps", steps)
    )


def estimate_cost(width: int, height: int, frames: int, steps: int, *, model: CostModel = DEFAULT_COST_MODEL) -> float:
    """Estimated GPU-seconds of one job with these parameters."""
    return model.overhead_seconds + model.seconds_per_unit * cost_units(width, height, frames, steps)


async def calibrate(session: AsyncSession, *, sample: int = CALIBRATION_SAMPLE_JOBS) -> CostModel:
    """Fit the cost model to the most recent succeeded jobs' measured GPU-seconds.

    A least-squares line (``numpy.polyfit``) through (units, seconds) when there are at least
    ``MIN_CALIBRATION_JOBS`` jobs of different sizes and the fit is sane (positive slope, non-negative overhead);
    otherwise the default model scaled by the median of measured/estimated; the default model when nothing was
    measured yet.
    """
    rows = (
        await session.execute(
            select(Job.width, Job.height, Job.frames, Job.steps, Job.gpu_seconds)
            .where(Job.status == JobStatus.SUCCEEDED, Job.gpu_seconds > 0)
            .order_by(Job.finished_at.desc())
            .limit(sample)
        )
    ).all()
    if not rows:
        return DEFAULT_COST_MODEL
    units = np.array([cost_units(r.width, r.height, r.frames, r.steps) for r in rows], dtype=np.float64)
    seconds = np.array([r.gpu_seconds for r in rows], dtype=np.float64)
    n = len(rows)
    if n >= MIN_CALIBRATION_JOBS and np.ptp(units) > 0:
        slope, intercept = (float(c) for c in np.polyfit(units, seconds, 1))
        if slope > 0 and intercept >= 0:
            return CostModel(overhead_seconds=intercept, seconds_per_unit=slope, samples=n)
    scale = float(np.median(seconds / (DEFAULT_OVERHEAD_SECONDS + DEFAULT_SECONDS_PER_UNIT * units)))
    return CostModel(
        overhead_seconds=DEFAULT_OVERHEAD_SECONDS * scale, seconds_per_unit=DEFAULT_SECONDS_PER_UNIT * scale, samples=n
    )
