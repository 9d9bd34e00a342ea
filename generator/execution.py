"""The worker's jobs: claiming one (or failing it when its stored parameters are invalid), holding its lease while
the worker loads its model, and running it: read its input from the store, generate, encode, and settle it
(finish with its MP4, fail, cancel or give back), with progress, lease renewal, cancel polling, the shutdown
deadline and the stall check alongside.

:class:`JobRunner` is owned by :class:`generator.worker.WorkerProcess`, which makes one once the store is open and
hands it each claimed job (``await runner.run(job)``). What the runner reads of the worker (the loaded model, the
safety checker, whether it is stopping and until when, its registry state) is the :class:`WorkerView` protocol.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from generator.jobrun import (
    ClaimedJob,
    FatalCudaError,
    InputMissing,
    JobRun,
    _detail,
    _exit_now,
    is_fatal_cuda_error,
    run_in_daemon_thread,
)
from generator.worker_settings import (
    CANCEL_POLL_INTERVAL_S,
    DEFAULT_UPLOAD_LIMIT_BYTES,
    EXIT_STALLED,
    LEASE_EXPIRE_NOW_S,
    LEASE_RENEW_FRACTION,
    MSG_IMAGE_UNREADABLE,
    MSG_INPUT_MISSING,
    MSG_INTERNAL,
    MSG_TOO_LARGE,
    NOTE_LOW_MEMORY,
    PHASE_DENOISING,
    PHASE_ENCODING,
    STOP_CANCEL,
    STOP_LOST,
    STOP_SHUTDOWN,
    WORKER_STATE_BUSY,
    WORKER_STATE_IDLE,
    WORKER_STATE_LOADING,
    WorkerSettings,
)

if TYPE_CHECKING:
    from PIL.Image import Image
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from generator.faults import FaultPlan
    from generator.models.base import VideoBackend
    from generator.params import GenerationParams
    from generator.safety import SafetyChecker
    from jobs.progress import ProgressAck, ProgressWriter

log = logging.getLogger("generator.worker")


class WorkerView(Protocol):
    """What a :class:`JobRunner` reads of the worker that owns it."""

    @property
    def generator(self) -> VideoBackend | None:
        """The loaded model backend."""

    @property
    def safety(self) -> SafetyChecker | None:
        """The image classifier (None: off)."""

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""

    @property
    def stop_deadline(self) -> float:
        """``time.monotonic()`` by which a running job must be given back after a stop request (inf: none)."""

    async def set_state(self, state: str, job_id: int | None, *, job_done: bool = False) -> None:
        """Record the worker's state (busy with ``job_id``, idle) in its registry row."""


class JobRunner:
    """Claims jobs for the worker that owns it and runs one at a time: ``await claim(...)``, ``await run(job)``."""

    def __init__(
        self,
        worker: WorkerView,
        settings: WorkerSettings,
        faults: FaultPlan,
        sessions: async_sessionmaker[AsyncSession],
        progress: ProgressWriter,
    ) -> None:
        self._worker = worker
        self.settings = settings
        self.faults = faults
        self._sessions = sessions
        self._progress = progress

    def _session(self) -> AsyncSession:
        return self._sessions()

    async def _write_progress(
        self, job: ClaimedJob, step: int, total: int, phase: str, lease_s: float | None = None
    ) -> ProgressAck:
        """One fenced progress write of ``job``, renewing its lease (``lease_s`` None: ``I2V_LEASE_SECONDS``)."""
        return await self._progress.write(
            job.id,
            job.attempt,
            worker_id=self.settings.worker_id,
            step=step,
            total=total,
            phase=phase,
            lease_seconds=self.settings.lease_s if lease_s is None else lease_s,
        )

    async def _report(self, run: JobRun, *, lease_s: float | None = None) -> None:
        """One fenced progress write (renews the lease); stops the run if the job was cancelled or is not ours."""
        step, total, phase = run.snapshot()
        ack = await self._write_progress(run.job, step, total, phase, lease_s)
        log.info("progress job=%d attempt=%d step=%d/%d phase=%s", run.job.id, run.job.attempt, step, total, phase)
        if not ack.ok:
            log.warning("job %d attempt %d is no longer ours; stopping it", run.job.id, run.job.attempt)
            run.stop(STOP_LOST)
        elif ack.cancel_requested:
            log.info("job %d: cancel requested", run.job.id)
            run.stop(STOP_CANCEL)

    async def _poll_cancel(self, run: JobRun) -> None:
        """A cheap read of the job's cancel flag and ownership between progress writes."""
        from jobs.db import begin_read_only
        from jobs.progress import attempt_state

        async with self._session() as session:
            await begin_read_only(session)
            ack = await attempt_state(session, run.job.id, run.job.attempt, worker_id=self.settings.worker_id)
        if not ack.ok:
            run.stop(STOP_LOST)
        elif ack.cancel_requested:
            log.info("job %d: cancel requested", run.job.id)
            run.stop(STOP_CANCEL)

    async def _record_note(self, run: JobRun, note: str) -> None:
        """Record a degradation (the low-memory retry) in the job's ``error_detail`` (internal worker notes),
        fenced like every worker write: this job, this attempt, this worker, still running."""
        from jobs.progress import record_note

        async with self._session() as session, session.begin():
            await record_note(session, run.job.id, run.job.attempt, worker_id=self.settings.worker_id, note=note)

    # -- the claim -------------------------------------------------------------------------------------------

    async def claim(self, models: tuple[str, ...], loaded_model: str | None) -> ClaimedJob | None:
        """Claim the next queued job for one of ``models`` (``loaded_model``'s preferred, within
        ``MODEL_AFFINITY_MAX_SKIPS``) and copy out what its run needs; None when none is queued. A job whose stored
        parameters no model space accepts (a row edited by hand) fails at once, uncharged; None then too."""
        from generator.params import ParamError
        from jobs.transitions import claim_next_job, fail_job

        async with self._session() as session, session.begin():
            job = await claim_next_job(
                session,
                self.settings.worker_id,
                lease_seconds=self.settings.lease_s,
                models=models,
                loaded_model=loaded_model,
                max_skips=self.settings.affinity_max_skips,
            )
            if job is None:
                return None
            try:
                params = job.params
            except ParamError as exc:
                log.warning("job %d has invalid stored parameters: %s", job.id, exc)
                await fail_job(
                    session,
                    job.id,
                    job.attempt,
                    worker_id=self.settings.worker_id,
                    error=f"The stored parameters are invalid: {exc}",
                    detail=repr(exc),
                    gpu_seconds=0.0,
                )
                return None
            claimed = ClaimedJob(
                id=job.id,
                attempt=job.attempt,
                input_sha256=job.input_sha256,
                params=params,
                width=job.width,
                height=job.height,
                upload_limit_bytes=job.upload_limit_bytes or DEFAULT_UPLOAD_LIMIT_BYTES,
            )
        log.info("claimed job %d (attempt %d)", claimed.id, claimed.attempt)
        return claimed

    async def work_left(self, models: tuple[str, ...]) -> bool:
        """True while any job for one of ``models`` is queued or running (anywhere): a draining worker waits for
        leases to settle; jobs for other models wait for another worker."""
        from jobs.db import begin_read_only
        from jobs.queue import pending_count

        async with self._session() as session:
            await begin_read_only(session)
            return await pending_count(session, models=models) > 0

    async def renew_while_loading(self, job: ClaimedJob) -> None:
        """Keep the claimed job's lease (phase "loading") while the worker loads its model (a real model takes
        minutes); runs until cancelled."""
        while True:
            await self._write_progress(job, 0, job.steps, WORKER_STATE_LOADING)
            await asyncio.sleep(self.settings.lease_s * LEASE_RENEW_FRACTION)

    async def give_back(self, job: ClaimedJob) -> None:
        """Put a claimed job that has not run back in the queue, uncharged."""
        from jobs.transitions import release_job

        async with self._session() as session, session.begin():
            await release_job(session, job.id, job.attempt, worker_id=self.settings.worker_id)

    # -- one job ---------------------------------------------------------------------------------------------

    async def run(self, job: ClaimedJob) -> None:
        """Run ``job`` to its end (finished, failed, cancelled, given back or lost), the worker busy meanwhile."""
        run = JobRun(job=job, faults=self.faults, loop=asyncio.get_running_loop(), changed=asyncio.Event())
        await self._worker.set_state(WORKER_STATE_BUSY, job.id)
        watcher = asyncio.create_task(self._watch(run), name=f"watch-job-{job.id}")
        try:
            await self._execute(run)
        finally:
            watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                pass
        await self._worker.set_state(WORKER_STATE_IDLE, None, job_done=True)

    async def _watch(self, run: JobRun) -> None:
        """Progress writes (throttled), lease renewal, cancel polling, the shutdown deadline and the stall check."""
        s = self.settings
        renew_after = s.lease_s * LEASE_RENEW_FRACTION
        last_write = -math.inf
        last_written: tuple[int, int, str] | None = run.snapshot()  # the claim/"preparing" write covers this
        last_poll = time.monotonic()
        last_write = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(run.changed.wait(), timeout=CANCEL_POLL_INTERVAL_S)
            except TimeoutError:
                pass
            run.changed.clear()
            now = time.monotonic()
            snap = run.snapshot()
            try:
                if (
                    snap != last_written and now - last_write >= s.progress_interval_s
                ) or now - last_write >= renew_after:
                    await self._report(run)
                    last_write, last_written, last_poll = now, snap, now
                elif now - last_poll >= CANCEL_POLL_INTERVAL_S:
                    await self._poll_cancel(run)
                    last_poll = now
            except Exception:
                log.exception("progress write for job %d failed", run.job.id)
            self._check_deadline(run, now)
            if run.generating_since is not None and now - run.last_change > s.stall_s:
                log.critical("job %d made no progress for %.0f s: the GPU call hung; exiting", run.job.id, s.stall_s)
                _exit_now(EXIT_STALLED)

    def _check_deadline(self, run: JobRun, now: float) -> None:
        """After SIGTERM: stop the job if it cannot finish within the grace period."""
        if not self._worker.stopping or run.stop_reason is not None or run.generating_since is None:
            return
        step, total, _ = run.snapshot()
        if step >= total:
            return  # decoding: nearly done, let it finish
        if step > 0:
            per_step = (now - run.generating_since) / step
            expected_end = now + per_step * (total - step)
        else:
            expected_end = now
        if now >= self._worker.stop_deadline or (step > 0 and expected_end > self._worker.stop_deadline):
            log.info(
                "job %d cannot finish within the grace period (step %d/%d); giving it back", run.job.id, step, total
            )
            run.stop(STOP_SHUTDOWN)

    async def _execute(self, run: JobRun) -> None:
        """Prepare, generate, encode and settle one job."""
        from generator.images import ImageError
        from generator.models.base import GenerationCancelled, GenerationFailed, GenerationOutOfMemory
        from generator.params import ParamError
        from generator.safety import UnsafeInput, sample_frames
        from generator.video import VideoTooLarge, parameter_tags
        from jobs.safety import STAGE_INPUT, STAGE_OUTPUT

        job = run.job
        try:
            await self._report(run)
            data = await self._read_input(job)
            image, params, width, height = await run_in_daemon_thread(
                functools.partial(self._prepare, job, data), name=f"prepare-{job.id}"
            )
            if run.stop_reason is None and self._worker.stopping and time.monotonic() >= self._worker.stop_deadline:
                run.stop(STOP_SHUTDOWN)
            if run.stop_reason is not None:
                raise GenerationCancelled(0, job.steps)
            await self._check_safety(run, STAGE_INPUT, [image])
            frames = await self._generate(run, image, params, width, height)
            if run.stop_reason in (STOP_CANCEL, STOP_LOST):
                raise GenerationCancelled(0, job.steps)
            await self._check_safety(run, STAGE_OUTPUT, sample_frames(frames))
            run.set_phase(PHASE_ENCODING)
            await self._report(run)
            assert self._worker.generator is not None
            tags = parameter_tags(params, model=self._worker.generator.model, width=width, height=height, job_id=job.id)
            await self._encode_and_finish(run, frames, params.fps, tags)
        except GenerationCancelled:
            await self._settle_stopped(run)
        except InputMissing as exc:
            await self._fail(run, MSG_INPUT_MISSING, exc)
        except ImageError as exc:
            await self._fail(run, MSG_IMAGE_UNREADABLE.format(reason=exc), exc)
        except ParamError as exc:
            await self._fail(run, f"The stored parameters are invalid: {exc}", exc)
        except (GenerationOutOfMemory, GenerationFailed) as exc:
            await self._fail(run, str(exc), exc)
        except VideoTooLarge as exc:
            await self._fail(run, MSG_TOO_LARGE, exc)
        except UnsafeInput as exc:
            await self._fail(run, str(exc), exc)  # before generation: nothing charged
        except FatalCudaError:
            raise
        except Exception as exc:
            if is_fatal_cuda_error(exc):
                await self._expire_lease(run)
                raise FatalCudaError(str(exc)) from exc
            log.exception("job %d failed", job.id)
            await self._fail(run, MSG_INTERNAL, exc)

    async def _check_safety(self, run: JobRun, stage: str, images: list[Image]) -> None:
        """The image classifier's verdict on the input or the output, recorded on the job (its time apart from the
        GPU time of generation); an unsafe input raises ``UnsafeInput``. An unsafe video is finished as usual: the
        delivering side applies the server's policy (age-restricted channels only, as a spoiler, or nowhere)."""
        from generator.safety import UnsafeInput
        from jobs.safety import STAGE_INPUT, Verdict, record_verdict

        if self._worker.safety is None:
            return
        checker = self._worker.safety
        result = await run_in_daemon_thread(
            functools.partial(checker.check, stage, images), name=f"safety-{run.job.id}"
        )
        log.info(
            "job %d %s safety check: %s (score %.3f, %.2f s)",
            run.job.id,
            stage,
            result.verdict.value,
            result.score,
            result.seconds,
        )
        async with self._session() as session, session.begin():
            await record_verdict(
                session,
                run.job.id,
                run.job.attempt,
                worker_id=self.settings.worker_id,
                stage=stage,
                verdict=result.verdict,
                seconds=result.seconds,
            )
        if stage == STAGE_INPUT and result.verdict is Verdict.UNSAFE:
            raise UnsafeInput()

    async def _read_input(self, job: ClaimedJob) -> bytes:
        """The job's input image from the store; raises InputMissing when it is not kept."""
        from jobs.blobs import DATABASE_BLOBS
        from jobs.db import begin_read_only

        async with self._session() as session:
            await begin_read_only(session)
            data = await DATABASE_BLOBS.read_input(session, job.input_sha256)
        if data is None:
            raise InputMissing(f"no stored image {job.input_sha256}")
        return data

    def _prepare(self, job: ClaimedJob, data: bytes) -> tuple[Image, GenerationParams, int, int]:
        """Decode and fit the input image and rebuild the parameters (runs on a thread)."""
        from generator.images import fit_image, load_image
        from generator.params import target_size

        params = job.params
        image = load_image(data)
        if job.width and job.height:
            width, height = job.width, job.height
        else:
            width, height = target_size(params.resolution, image.width, image.height, params.model)
        return fit_image(image, width, height), params, width, height

    async def _generate(
        self, run: JobRun, image: Image, params: GenerationParams, width: int, height: int
    ) -> list[Image]:
        """Run the pipeline; on out-of-memory retry once in low-memory mode (recorded on the job)."""
        from generator.models.base import GenerationOutOfMemory

        assert self._worker.generator is not None
        generator = self._worker.generator
        for low_memory in (False, True):
            with run.lock:
                run.step = 0
                run.phase = PHASE_DENOISING
            call = functools.partial(
                generator.generate,
                image,
                params,
                width=width,
                height=height,
                on_step=run.on_step,
                should_cancel=run.should_cancel,
                low_memory=low_memory,
                on_phase=run.set_phase,
            )
            started = time.monotonic()
            run.generating_since = started
            run.last_change = started
            try:
                return await run_in_daemon_thread(call, name=f"generate-{run.job.id}")
            except GenerationOutOfMemory:
                if low_memory:
                    raise
                step, total, _ = run.snapshot()
                run.note = NOTE_LOW_MEMORY.format(step=step, total=total)
                log.warning("job %d: %s", run.job.id, run.note)
                gc.collect()
                try:
                    await self._record_note(run, run.note)
                except Exception:
                    log.exception("could not record the low-memory note for job %d", run.job.id)
            finally:
                run.gpu_seconds += time.monotonic() - started
                run.generating_since = None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _encode_and_finish(self, run: JobRun, frames: list[Image], fps: int, tags: dict[str, str]) -> None:
        from generator.video import encode_to_budget
        from jobs.transitions import finish_job

        job = run.job
        scratch = self.settings.output_dir / f".encode-{job.id}-{job.attempt}-{os.getpid()}.mp4"

        def encode() -> tuple[Any, bytes]:
            self.faults.before_encode()
            try:
                result = encode_to_budget(frames, scratch, fps, job.upload_limit_bytes, metadata=tags)
                return result, scratch.read_bytes()
            finally:
                scratch.unlink(missing_ok=True)

        result, video = await run_in_daemon_thread(encode, name=f"encode-{job.id}")
        async with self._session() as session, session.begin():
            ok = await finish_job(
                session,
                job.id,
                job.attempt,
                worker_id=self.settings.worker_id,
                video=video,
                gpu_seconds=run.gpu_seconds,
            )
        if ok:
            log.info(
                "job %d done: stored %d bytes, %.2f GPU-s, %d encode attempt(s)",
                job.id,
                result.size_bytes,
                run.gpu_seconds,
                result.attempts,
            )
        else:
            log.warning("job %d attempt %d was no longer ours at finish; its video was not stored", job.id, job.attempt)

    async def _settle_stopped(self, run: JobRun) -> None:
        """The generation stopped early: cancelled (charged), given back (shutdown) or lost (nothing to do)."""
        from jobs.transitions import finish_cancelled, release_job

        job = run.job
        reason = run.stop_reason
        if reason == STOP_CANCEL:
            try:
                await self._report(run)  # record the step it stopped at
            except Exception:
                log.exception("final progress write for job %d failed", job.id)
        async with self._session() as session, session.begin():
            if reason == STOP_CANCEL:
                ok = await finish_cancelled(
                    session, job.id, job.attempt, worker_id=self.settings.worker_id, gpu_seconds=run.gpu_seconds
                )
                log.info(
                    "job %d cancelled at step %d (%.2f GPU-s charged, recorded=%s)",
                    job.id,
                    run.step,
                    run.gpu_seconds,
                    ok,
                )
            elif reason == STOP_SHUTDOWN:
                ok = await release_job(session, job.id, job.attempt, worker_id=self.settings.worker_id)
                log.info("job %d given back to the queue uncharged (recorded=%s)", job.id, ok)
            else:
                log.warning("job %d attempt %d lost its lease; leaving it to its new owner", job.id, job.attempt)

    async def _fail(self, run: JobRun, message: str, exc: BaseException) -> None:
        from jobs.transitions import fail_job

        detail = _detail(exc)
        if run.note:
            detail = run.note + "\n" + detail
        async with self._session() as session, session.begin():
            ok = await fail_job(
                session,
                run.job.id,
                run.job.attempt,
                worker_id=self.settings.worker_id,
                error=message,
                detail=detail,
                gpu_seconds=run.gpu_seconds,
            )
        log.warning("job %d failed (recorded=%s): %s", run.job.id, ok, message)

    async def _expire_lease(self, run: JobRun) -> None:
        """Before exiting on a sticky CUDA error: shorten our lease to now so the next rescue requeues the job."""
        try:
            await self._report(run, lease_s=LEASE_EXPIRE_NOW_S)
        except Exception:
            log.exception("could not shorten the lease of job %d", run.job.id)
