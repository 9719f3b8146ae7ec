"""The worker: validates files, runs each queued job in its own training process, reports back.

``openft worker`` runs one; ``openft serve`` embeds one in a thread. The worker never imports
torch: its executor (:mod:`openft.jobs.executors`) runs ``python -m openft.training spec.json``
as a child process in its own process group, or in a Ray actor; the worker reads the event lines
the training process writes and turns them into job events, checkpoints and the final job state.
Each job it holds heartbeats from claim to release, whatever step it is in (``jobs/claim.py``), and
each of its writes for a job is conditional on still holding it; status changes go through
``jobs/transitions.py``. Jobs whose worker stopped heartbeating are re-queued (or failed after
``max_job_attempts``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from openft.errors import OpenFTError
from openft.files.service import FileService
from openft.jobs import run_report, webhooks
from openft.jobs import status as st
from openft.jobs.claim import Claim, ClaimLost, heartbeat_every
from openft.jobs.executors import Executor, make_executor
from openft.jobs.reaper import Reaper
from openft.jobs.recovery import LineEvents, prepare_attempt, register_live_worker
from openft.jobs.spec import resolve_spec
from openft.jobs.training_lines import Running, record_line
from openft.jobs.transitions import NewEvent, fail, release, transition
from openft.jobs.validating import Validation, input_path
from openft.settings import Settings
from openft.store import Store
from openft.store.recovery import delete_checkpoints
from openft.store.rows import JobRow
from openft.tenancy import Principal

log = logging.getLogger(__name__)

REAP_EVERY = 5.0
KILL_GRACE = 3.0
SHUTDOWN_GRACE = 10.0


class Worker:
    def __init__(
        self, settings: Settings, store: Store, *, worker_id: str | None = None, executor: Executor | None = None
    ):
        self.settings = settings
        self.store = store
        self.executor = executor if executor is not None else make_executor(settings)
        self.files = FileService(settings, store)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        register_live_worker(self.worker_id)
        self.reaper = Reaper(settings, store, self.worker_id)
        self.validation = Validation(settings, store, self.files)
        self.heartbeat_every = heartbeat_every(settings.heartbeat_timeout_seconds)
        self.running: Running | None = None
        self._last_reap = 0.0

    # -- main loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; a job still training then goes back to the queue."""
        log.info("worker %s started", self.worker_id)
        # Webhook deliveries go out from their own thread, so a slow endpoint never delays training.
        dispatcher = webhooks.WebhookDispatcher(
            self.store, allow_private_addresses=self.settings.webhook_allow_private_addresses
        )
        threading.Thread(target=dispatcher.run, args=(stop,), name="openft-webhooks", daemon=True).start()
        while not stop.is_set():
            try:
                busy = self.tick()
            except Exception:  # a bad job must not kill the worker
                log.exception("worker tick failed")
                busy = False
            if not busy:
                stop.wait(self.settings.worker_poll_seconds)
        self.shutdown()

    def tick(self) -> bool:
        """One round of work; returns True when something happened (so the loop skips its sleep)."""
        now = time.time()
        if now - self._last_reap > REAP_EVERY:
            self._last_reap = now
            self.reap_stale_jobs(now)
        did = self.validate_next_job()
        if self.running is not None:
            did = self.pump_running() or did
        elif self.start_next_job():
            did = True
        else:
            self.executor.prepare()
        return did

    def shutdown(self) -> None:
        if self.running is None:
            self.executor.shutdown()
            return
        run = self.running
        # SIGTERM: the training process saves its full state at the end of its step, so the next
        # attempt loses nothing; a step that takes too long is cut short (the last state is used).
        run.handle.terminate()
        if run.handle.wait(timeout=SHUTDOWN_GRACE) is None:
            self._kill(run, force=True)
            run.handle.wait(timeout=30)
        for line in run.handle.read_events():
            self._record(run, line)
        self._close(run)
        self.executor.shutdown()
        self.running = None
        try:
            if run.result is not None and run.handle.poll() == 0:
                self._succeed(run)
                return
            why = NewEvent("The worker was stopped; the job was moved back to the queue", level="warn")
            transition(
                self.store,
                run.job.id,
                st.QUEUED,
                expect=st.RUNNING,
                worker=self.worker_id,
                events=[why],
                worker_id=None,
                estimated_finish=None,
            )
        finally:
            run.claim.stop()

    def _claim(self, job: JobRow) -> Claim:
        """Start heartbeating a job this worker has just claimed."""
        return Claim(self.store, job.id, self.worker_id, every=self.heartbeat_every).start()

    # -- validating_files ----------------------------------------------------------------------
    def validate_next_job(self) -> bool:
        job = self.store.claim_next_job(
            self.worker_id, st.VALIDATING, stale_before=time.time() - self.settings.heartbeat_timeout_seconds
        )
        if job is None:
            return False
        with self._claim(job) as claim:
            try:
                self.validation.run(job, claim)
            except ClaimLost:
                log.info("job %s: validation stopped; the job is no longer this worker's", job.id)
            except OpenFTError as exc:
                error = {"code": exc.code or "invalid_training_file", "message": exc.message, "param": exc.param}
                fail(self.store, job.id, error, expect=st.VALIDATING, worker=self.worker_id)
        return True

    def _file_path(self, job: JobRow, file_id: str) -> Path:
        return input_path(self.settings, self.store, self.files, job, file_id)

    # -- running -------------------------------------------------------------------------------
    def start_next_job(self) -> bool:
        job = self.store.claim_next_job(self.worker_id, st.QUEUED)
        if job is None:
            return False
        claim = self._claim(job)
        try:
            self.running = self._start(job, claim)
        finally:
            if self.running is None:
                claim.stop()
        return True

    def _start(self, job: JobRow, claim: Claim) -> Running | None:
        """Prepare and launch the training process of a queued job this worker holds; None if none runs."""
        output_dir = self.settings.jobs_dir / job.id
        try:
            spec = resolve_spec(
                job,
                self.settings,
                training_path=self._file_path(job, job.training_file),
                validation_path=self._file_path(job, job.validation_file) if job.validation_file else None,
                output_dir=output_dir,
                registered_models=self.store.local_models(),
                store=self.store,
            )
        except OpenFTError as exc:
            error = {"code": exc.code or "invalid_request", "message": exc.message, "param": exc.param}
            fail(self.store, job.id, error, expect=st.QUEUED, worker=self.worker_id)
            return None
        # An attempt continues from the last full state an earlier attempt (killed, re-queued,
        # paused) saved; with none it starts over, and the checkpoints it had are gone from disk.
        resume_from = prepare_attempt(output_dir)
        if resume_from is None:
            delete_checkpoints(self.store, job.id, held_by=self.worker_id, statuses=(st.QUEUED,))
        spec = replace(
            spec,
            resume_from=str(resume_from) if resume_from else None,
            save_state_every_steps=self.settings.save_state_every_steps,
            save_state_every_seconds=self.settings.save_state_every_seconds,
        )
        spec_path = output_dir / "spec.json"
        spec.write(spec_path)
        first_start = {"started_at": int(time.time())} if job.started_at is None else {}
        started = transition(
            self.store,
            job.id,
            st.RUNNING,
            expect=st.QUEUED,
            worker=self.worker_id,
            events=["Fine-tuning job started", *(run_report.start_events(output_dir) if first_start else [])],
            **first_start,
        )
        if not started:  # paused or cancelled while it was prepared: a paused job waits for its resume
            release(self.store, job.id, expect=st.PAUSED, worker=self.worker_id)
            return None
        try:
            handle = self.executor.launch(job, spec_path, output_dir)
        except Exception as exc:  # no process was started: the job must not stay running without one
            log.exception("job %s: could not start training", job.id)
            error = {"code": "server_error", "message": f"Could not start training: {exc}", "param": None}
            fail(self.store, job.id, error, expect=st.RUNNING, worker=self.worker_id)
            return None
        log.info("job %s: training process started (%s)", job.id, handle.description)
        events = LineEvents(self.store, job.id, self.worker_id)
        return Running(job=job, handle=handle, output_dir=output_dir, events=events, claim=claim)

    def pump_running(self) -> bool:
        run = self.running
        assert run is not None
        now = time.time()
        current = self.store.get_job(run.job.id)
        held = current.worker_id == self.worker_id and current.status in (st.RUNNING, st.PAUSED, st.QUEUED)
        if run.claim.lost or not held:
            # Cancelled (or taken from us): stop the training process now; its later lines are moot.
            if run.handle.poll() is None:
                self._kill(run, force=run.kill_sent_at is not None and now - run.kill_sent_at > KILL_GRACE)
                return False
            self._close(run)
            run.claim.stop()
            self.running = None
            log.info("job %s: training stopped (status %s)", run.job.id, current.status)
            return True
        if current.status != st.RUNNING:
            self._stop_for_pause(run, now)
        lines = run.handle.read_events()
        for line in lines:
            self._record(run, line)
        code = run.handle.poll()
        if code is None:
            return bool(lines)
        for line in run.handle.read_events():  # lines written just before exit
            self._record(run, line)
        self._close(run)
        self.running = None
        try:
            self._finish(run, code, current)
        finally:
            run.claim.stop()
        return True

    def _finish(self, run: Running, code: int, current: JobRow) -> None:
        """Record the outcome of a training process that exited with ``code``."""
        if run.stop_sent_at is not None or self.store.get_job(run.job.id).status in (st.PAUSED, st.QUEUED):
            self._finish_pause(run, code)  # paused while it ran, or while it was finishing
            return
        if code < 0 and run.error is None and run.result is None:
            # Killed by a signal (the OOM killer, an operator): the attempt is lost, not the job.
            why = f"The training process was killed ({_signal_name(-code)}; out of memory, or by an operator)"
            self.reaper.take_back(current, why=why, code="training_killed")
            return
        try:
            if code == 0 and run.result is not None:
                self._succeed(run)
                return
            error = run.error or {
                "code": "training_failed",
                "message": f"The training process exited with code {code}. {self._log_tail(run)}".strip(),
                "param": None,
            }
        except Exception as exc:  # finishing must never leave the job running without a process
            log.exception("job %s: could not record the result", run.job.id)
            error = {"code": "server_error", "message": f"Could not record the job's result: {exc}", "param": None}
        fail(self.store, run.job.id, error, expect=st.RUNNING, worker=self.worker_id)

    def _record(self, run: Running, line: dict[str, Any]) -> None:
        record_line(run, line, store=self.store, files=self.files, settings=self.settings)

    def _succeed(self, run: Running, *, from_status: str | tuple[str, ...] = st.RUNNING) -> None:
        job, result = run.job, run.result or {}
        if run.claim.lost:  # no results file for a job that is no longer ours
            return
        result_files: list[str] = []
        csv_path = run.output_dir / result.get("results_csv", "results.csv")
        if csv_path.exists():
            row = self.files.create_from_path(
                job.organization_id, csv_path, filename="step_metrics.csv", purpose="fine-tune-results"
            )
            result_files.append(row.id)
        adapter = run.output_dir / result.get("adapter_path", "adapter")
        self.files.blobs.publish(str(adapter.relative_to(self.settings.home)))
        summary = run_report.finish_events(self.settings, self.store, job, run.output_dir, run.extra, result)
        done = transition(
            self.store,
            job.id,
            st.SUCCEEDED,
            expect=from_status,
            worker=self.worker_id,
            events=[*summary, f"New fine-tuned model created: {job.model_name}", "The job has successfully completed"],
            fine_tuned_model=job.model_name,
            trained_tokens=int(result.get("trained_tokens", 0)),
            result_files=result_files,
            openft=result.get("openft"),  # early stopping's outcome (training/loop.py), else None
            finished_at=int(time.time()),
            estimated_finish=None,
        )
        if done:
            log.info("job %s succeeded: %s (%s)", job.id, job.model_name, adapter)
            return
        for file_id in result_files:  # the job is no longer ours: leave no results file behind
            self.files.delete(Principal(job.organization_id), file_id)

    def _kill(self, run: Running, *, force: bool) -> None:
        if force:
            run.handle.kill()
        else:
            run.handle.terminate()
        if run.kill_sent_at is None:
            run.kill_sent_at = time.time()

    def _close(self, run: Running) -> None:
        try:
            run.handle.close()
        except Exception:  # closing is best effort; the job's state is already decided
            log.exception("job %s: could not release its training process", run.job.id)

    def _log_tail(self, run: Running, lines: int = 3) -> str:
        return run.handle.log_tail(lines)

    # -- pause -------------------------------------------------------------------------------
    def _stop_for_pause(self, run: Running, now: float) -> None:
        """Ask the training process to save its state and stop; kill it if it takes too long."""
        if run.stop_sent_at is None:
            run.stop_sent_at = now
            run.handle.terminate()  # the training process saves a checkpoint at the end of its step
        elif now - run.stop_sent_at > self.settings.stop_grace_seconds and run.handle.poll() is None:
            self._kill(run, force=True)  # resuming then continues from the last periodic state

    def _finish_pause(self, run: Running, code: int) -> None:
        """The paused job's process ended: release the job (it stays paused, or queued if already resumed)."""
        current = self.store.get_job(run.job.id)
        if current.status not in (st.PAUSED, st.QUEUED) or current.worker_id != self.worker_id:
            return
        if code == 0 and run.result is not None:  # it finished before it could stop
            self._succeed(run, from_status=(st.PAUSED, st.QUEUED))
            return
        if run.error is not None:
            fail(self.store, run.job.id, run.error, expect=current.status, worker=self.worker_id)
            return
        where = f"at step {run.stopped_step}" if run.stopped_step is not None else "at its last checkpoint"
        release(
            self.store,
            run.job.id,
            expect=(st.PAUSED, st.QUEUED),
            worker=self.worker_id,
            events=[f"Training stopped {where}; the job continues from there when resumed"],
            estimated_finish=None,
        )

    # -- reaper --------------------------------------------------------------------------------
    def reap_stale_jobs(self, now: float) -> None:
        """Take jobs back from workers that are gone (see jobs/reaper.py)."""
        self.reaper.reap(now, training=self.running.job.id if self.running is not None else None)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
