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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from openft import ids
from openft.data.validation import first_error_message, validate_file
from openft.errors import OpenFTError
from openft.files.service import FileService
from openft.jobs import hyperparameters, webhooks
from openft.jobs import status as st
from openft.jobs.executors import Executor, Handle, make_executor
from openft.jobs.reaper import Reaper
from openft.jobs.recovery import LineEvents, pin_input, pinned_input, prepare_attempt, register_live_worker
from openft.jobs.spec import resolve_spec
from openft.settings import Settings
from openft.store import Store
from openft.store.recovery import add_checkpoint_once
from openft.store.rows import CheckpointRow, JobRow

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0
REAP_EVERY = 5.0
KILL_GRACE = 3.0
SHUTDOWN_GRACE = 10.0


def _format_metrics_message(m: dict[str, Any]) -> str:
    text = f"Step {m['step']}/{m['total_steps']}: training loss={m['train_loss']:.2f}"
    if m.get("valid_loss") is not None:
        text += f", validation loss={m['valid_loss']:.2f}"
    if m.get("full_valid_loss") is not None:
        text += f", full validation loss={m['full_valid_loss']:.2f}"
    if m.get("train_mean_reward") is not None:
        text += f", train mean reward={m['train_mean_reward']:.2f}"
    if m.get("full_valid_mean_reward") is not None:
        text += f", full validation mean reward={m['full_valid_mean_reward']:.2f}"
    elif m.get("valid_mean_reward") is not None:
        text += f", validation mean reward={m['valid_mean_reward']:.2f}"
    return text


METRIC_KEYS = (
    "step",
    "total_steps",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
    "tokens_per_second",
    # DPO (recipes/dpo.py): implicit rewards beta * (log p_policy - log p_reference) of each output
    *(
        f"{split}_rewards_{name}"
        for split in ("train", "valid", "full_valid")
        for name in ("chosen", "rejected", "margin", "accuracy")
    ),
    # Reinforcement (recipes/reinforcement.py): the grader's rewards
    "train_mean_reward",
    "train_reward_std",
    "train_grader_error_rate",
    "valid_mean_reward",
    "full_valid_mean_reward",
    "kl",
    "completion_tokens_mean",
)


@dataclass
class Running:
    """The job this worker is training right now."""

    job: JobRow
    handle: Handle
    output_dir: Path
    events: LineEvents
    """Writes the training process's event lines as job events, each once (see jobs/recovery.py)."""
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    last_heartbeat: float = 0.0
    kill_sent_at: float | None = None
    stop_sent_at: float | None = None
    """When the process was asked to save its state and stop (a pause)."""
    stopped_step: int | None = None
    """The step at which it did (its ``stopped`` line)."""
    extra: dict[str, Any] = field(default_factory=dict)


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
        threading.Thread(
            target=webhooks.WebhookDispatcher(self.store).run, args=(stop,), name="openft-webhooks", daemon=True
        ).start()
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
            self._handle_line(run, line)
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
            self._handle_line(run, line)
        if now - run.last_heartbeat > HEARTBEAT_EVERY:
            run.last_heartbeat = now
            self.store.heartbeat(run.job.id, self.worker_id, now)
        code = run.handle.poll()
        if code is None:
            return bool(lines)
        for line in run.handle.read_events():  # lines written just before exit
            self._handle_line(run, line)
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

    def _handle_line(self, run: Running, line: dict[str, Any]) -> None:
        kind = line.get("kind")
        job_id = run.job.id
        if kind == "message":
            run.events.append(line, line["message"], level=line.get("level", "info"), data=line.get("data"))
        elif kind == "metrics":
            data = {k: line[k] for k in METRIC_KEYS if line.get(k) is not None}
            run.events.append(line, _format_metrics_message(line), type="metrics", data=data)
            step, total, elapsed = line["step"], line["total_steps"], line.get("elapsed_seconds")
            if elapsed and step:
                eta = int(time.time() + (total - step) * (elapsed / step))
                self.store.update_job(job_id, expect_status=st.RUNNING, estimated_finish=eta)
        elif kind == "checkpoint" and run.events.is_new(line):
            name = ids.checkpoint_model_name(run.job.model_name, line["step"])
            adapter = run.output_dir / line["path"]
            self.files.blobs.publish(str(adapter.relative_to(self.settings.home)))
            add_checkpoint_once(
                self.store,
                CheckpointRow(
                    id=ids.new_checkpoint_id(),
                    job_id=job_id,
                    organization_id=run.job.organization_id,
                    created_at=int(time.time()),
                    step_number=line["step"],
                    fine_tuned_model_checkpoint=name,
                    metrics={k: v for k, v in line.get("metrics", {}).items() if v is not None},
                    adapter_path=str(adapter.relative_to(self.settings.home)),
                ),
            )
            run.events.append(line, f"Checkpoint created at step {line['step']} with Snapshot ID: {name}")
        elif kind == "checkpoint_deleted":
            self.store.delete_checkpoint(job_id, line["step"])
        elif kind == "result":
            run.result = line
        elif kind == "error":
            run.error = {"code": line["code"], "message": line["message"], "param": line.get("param")}
        elif kind == "stopped":
            run.stopped_step = line["step"]

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
