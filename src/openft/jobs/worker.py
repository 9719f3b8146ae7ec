"""The worker: validates files, runs each queued job in its own training process, reports back.

``openft worker`` runs one; ``openft serve`` embeds one in a thread. The worker never imports
torch: its executor (:mod:`openft.jobs.executors`) runs ``python -m openft.training spec.json``
as a child process in its own process group, or in a Ray actor; the worker reads the event lines
the training process writes and turns them into job events, checkpoints and the final job state.
Jobs whose worker stopped heartbeating are re-queued (or failed after ``max_job_attempts``).
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

from openft.data.validation import first_error_message, validate_file
from openft.errors import OpenFTError
from openft.files.service import FileService
from openft.jobs import hyperparameters, webhooks
from openft.jobs import status as st
from openft.jobs.executors import Executor, make_executor
from openft.jobs.reaper import Reaper
from openft.jobs.recovery import LineEvents, pin_input, pinned_input, prepare_attempt, register_live_worker
from openft.jobs.spec import resolve_spec
from openft.jobs.training_lines import Running, record_line
from openft.settings import Settings
from openft.store import Store
from openft.store.rows import JobRow

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0
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
        job_id = run.job.id
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
        if run.result is not None and run.handle.poll() == 0:
            self._succeed(run)
            return
        if self.store.update_job(
            job_id,
            expect_status=st.RUNNING,
            expect_worker=self.worker_id,
            status=st.QUEUED,
            worker_id=None,
            estimated_finish=None,
        ):
            self.store.append_event(job_id, "The worker was stopped; the job was moved back to the queue", level="warn")

    # -- validating_files ----------------------------------------------------------------------
    def validate_next_job(self) -> bool:
        job = self.store.claim_next_job(
            self.worker_id, st.VALIDATING, stale_before=time.time() - self.settings.heartbeat_timeout_seconds
        )
        if job is None:
            return False
        try:
            self._validate(job)
        except OpenFTError as exc:
            self._fail(
                job,
                {"code": exc.code or "invalid_training_file", "message": exc.message, "param": exc.param},
                from_status=st.VALIDATING,
            )
        return True

    def _validate(self, job: JobRow) -> None:
        method = job.method["type"]
        report = validate_file(
            self._file_path(job, job.training_file),
            method,
            purpose="training",
            max_examples=self.settings.max_examples_per_file,
        )
        if not report.ok:
            problem = first_error_message(report, file_kind="training")
            assert problem is not None
            self._fail(
                job,
                {"code": problem.code, "message": problem.message, "param": "training_file"},
                from_status=st.VALIDATING,
            )
            return
        if job.validation_file:
            vreport = validate_file(
                self._file_path(job, job.validation_file),
                method,
                purpose="validation",
                min_examples=1,
                max_examples=self.settings.max_examples_per_file,
            )
            if not vreport.ok:
                problem = first_error_message(vreport, file_kind="validation")
                assert problem is not None
                self._fail(
                    job,
                    {"code": problem.code, "message": problem.message, "param": "validation_file"},
                    from_status=st.VALIDATING,
                )
                return
        for file_id in filter(None, (job.training_file, job.validation_file)):
            pin_input(self.settings.jobs_dir / job.id, file_id, self._file_path(job, file_id))
        for warning in report.warnings[:5]:
            self.store.append_event(job.id, warning.message, level="warn")
        # The method's own section holds every requested value (beta for DPO, ...); the job's
        # top-level hyperparameters carry the three all methods share.
        requested = (job.method.get(method) or {}).get("hyperparameters") or job.hyperparameters
        resolved_all = hyperparameters.resolve_method(method, requested, report.n_examples)
        resolved = {k: resolved_all[k] for k in hyperparameters.COMMON}
        method_obj = dict(job.method)
        method_obj[method] = {**method_obj.get(method, {}), "hyperparameters": resolved_all}
        if self.store.update_job(
            job.id,
            expect_status=st.VALIDATING,
            expect_worker=self.worker_id,
            status=st.QUEUED,
            worker_id=None,
            hyperparameters=resolved,
            method=method_obj,
        ):
            self.store.append_event(job.id, "Files validated, moving job to queued state")

    def _file_path(self, job: JobRow, file_id: str) -> Path:
        # Validated inputs are pinned in the job's directory: a file deleted since stays readable to it.
        pinned = pinned_input(self.settings.jobs_dir / job.id, file_id)
        if pinned is not None:
            return pinned
        return self.files.local_path(self.store.get_file(file_id, job.organization_id))

    # -- running -------------------------------------------------------------------------------
    def start_next_job(self) -> bool:
        job = self.store.claim_next_job(self.worker_id, st.QUEUED, to_status=st.RUNNING)
        if job is None:
            return False
        output_dir = self.settings.jobs_dir / job.id
        try:
            spec = resolve_spec(
                job,
                self.settings,
                training_path=self._file_path(job, job.training_file),
                validation_path=self._file_path(job, job.validation_file) if job.validation_file else None,
                output_dir=output_dir,
                registered_models=self.store.local_models(),
            )
        except OpenFTError as exc:
            self._fail(
                job,
                {"code": exc.code or "invalid_request", "message": exc.message, "param": exc.param},
                from_status=st.RUNNING,
            )
            return True
        # An attempt continues from the last full state an earlier attempt (killed, re-queued,
        # paused) saved; with none it starts over, and the checkpoints it had are gone from disk.
        resume_from = prepare_attempt(output_dir)
        if resume_from is None:
            for ckpt in self.store.list_checkpoints(job.id, limit=1000)[0]:
                self.store.delete_checkpoint(job.id, ckpt.step_number)
        spec = replace(
            spec,
            resume_from=str(resume_from) if resume_from else None,
            save_state_every_steps=self.settings.save_state_every_steps,
            save_state_every_seconds=self.settings.save_state_every_seconds,
        )
        spec_path = output_dir / "spec.json"
        spec.write(spec_path)
        if job.started_at is None:
            self.store.update_job(job.id, started_at=int(time.time()))
        self.store.append_event(job.id, "Fine-tuning job started")
        try:
            handle = self.executor.launch(job, spec_path, output_dir)
        except Exception as exc:  # no process was started: the job must not stay running without one
            log.exception("job %s: could not start training", job.id)
            error = {"code": "server_error", "message": f"Could not start training: {exc}", "param": None}
            self._fail(job, error, from_status=st.RUNNING)
            return True
        self.running = Running(
            job=job,
            handle=handle,
            output_dir=output_dir,
            events=LineEvents(self.store, job.id),
            last_heartbeat=time.time(),
        )
        log.info("job %s: training process started (%s)", job.id, handle.description)
        return True

    def pump_running(self) -> bool:
        run = self.running
        assert run is not None
        now = time.time()
        current = self.store.get_job(run.job.id)
        if current.worker_id != self.worker_id or current.status not in (st.RUNNING, st.PAUSED, st.QUEUED):
            # Cancelled (or taken from us): stop the training process now; its later lines are moot.
            if run.handle.poll() is None:
                self._kill(run, force=run.kill_sent_at is not None and now - run.kill_sent_at > KILL_GRACE)
                return False
            self._close(run)
            self.running = None
            log.info("job %s: training stopped (status %s)", run.job.id, current.status)
            return True
        if current.status != st.RUNNING:
            self._stop_for_pause(run, now)
        lines = run.handle.read_events()
        for line in lines:
            self._record(run, line)
        if now - run.last_heartbeat > HEARTBEAT_EVERY:
            run.last_heartbeat = now
            self.store.heartbeat(run.job.id, self.worker_id, now)
        code = run.handle.poll()
        if code is None:
            return bool(lines)
        for line in run.handle.read_events():  # lines written just before exit
            self._record(run, line)
        self._close(run)
        self.running = None
        if run.stop_sent_at is not None or self.store.get_job(run.job.id).status in (st.PAUSED, st.QUEUED):
            self._finish_pause(run, code)  # paused while it ran, or while it was finishing
            return True
        if code < 0 and run.error is None and run.result is None:
            # Killed by a signal (the OOM killer, an operator): the attempt is lost, not the job.
            why = f"The training process was killed ({_signal_name(-code)}; out of memory, or by an operator)"
            self.reaper.take_back(current, why=why, code="training_killed")
            return True
        try:
            if code == 0 and run.result is not None:
                self._succeed(run)
                return True
            error = run.error or {
                "code": "training_failed",
                "message": f"The training process exited with code {code}. {self._log_tail(run)}".strip(),
                "param": None,
            }
        except Exception as exc:  # finishing must never leave the job running without a process
            log.exception("job %s: could not record the result", run.job.id)
            error = {"code": "server_error", "message": f"Could not record the job's result: {exc}", "param": None}
        self._fail(run.job, error, from_status=st.RUNNING)
        return True

    def _record(self, run: Running, line: dict[str, Any]) -> None:
        record_line(run, line, store=self.store, files=self.files, settings=self.settings)

    def _succeed(self, run: Running, *, from_status: str | tuple[str, ...] = st.RUNNING) -> None:
        job, result = run.job, run.result or {}
        result_files: list[str] = []
        csv_path = run.output_dir / result.get("results_csv", "results.csv")
        if csv_path.exists():
            row = self.files.create_from_path(
                job.organization_id, csv_path, filename="step_metrics.csv", purpose="fine-tune-results"
            )
            result_files.append(row.id)
        adapter = run.output_dir / result.get("adapter_path", "adapter")
        self.files.blobs.publish(str(adapter.relative_to(self.settings.home)))
        done = self.store.update_job(
            job.id,
            expect_status=from_status,
            expect_worker=self.worker_id,
            status=st.SUCCEEDED,
            fine_tuned_model=job.model_name,
            trained_tokens=int(result.get("trained_tokens", 0)),
            result_files=result_files,
            finished_at=int(time.time()),
            estimated_finish=None,
        )
        if done:
            log.info("job %s succeeded: %s (%s)", job.id, job.model_name, adapter)
            self.store.append_event(job.id, f"New fine-tuned model created: {job.model_name}")
            self.store.append_event(job.id, "The job has successfully completed")
            webhooks.job_finished(self.store, job.id, st.SUCCEEDED)

    def _fail(self, job: JobRow, error: dict[str, Any], *, from_status: str) -> None:
        if self.store.update_job(
            job.id,
            expect_status=from_status,
            status=st.FAILED,
            error=error,
            finished_at=int(time.time()),
            estimated_finish=None,
        ):
            self.store.append_event(job.id, error["message"], level="error")
            webhooks.job_finished(self.store, job.id, st.FAILED)

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
            self._fail(run.job, run.error, from_status=current.status)
            return
        if self.store.update_job(
            run.job.id,
            expect_status=(st.PAUSED, st.QUEUED),
            expect_worker=self.worker_id,
            worker_id=None,
            estimated_finish=None,
        ):
            where = f"at step {run.stopped_step}" if run.stopped_step is not None else "at its last checkpoint"
            self.store.append_event(run.job.id, f"Training stopped {where}; the job continues from there when resumed")

    # -- reaper --------------------------------------------------------------------------------
    def reap_stale_jobs(self, now: float) -> None:
        """Take jobs back from workers that are gone (see jobs/reaper.py)."""
        self.reaper.reap(now, training=self.running.job.id if self.running is not None else None)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
