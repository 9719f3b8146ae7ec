"""The worker: validates files, runs each queued job in its own training process, reports back.

``openft worker`` runs one; ``openft serve`` embeds one in a thread. The worker never imports
torch: it spawns ``python -m openft.training spec.json`` in a new process group (so a crash or
OOM becomes a failed job and a cancel is one ``killpg``), tails the events file the training
process writes, and turns its lines into job events, checkpoints and the final job state.
Jobs whose worker stopped heartbeating are re-queued (or failed after ``max_job_attempts``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openft import ids
from openft.data.validation import first_error_message, validate_file
from openft.errors import OpenFTError
from openft.files.service import FileService
from openft.jobs import hyperparameters
from openft.jobs import status as st
from openft.jobs.spec import resolve_spec
from openft.settings import Settings
from openft.store import Store
from openft.store.rows import CheckpointRow, JobRow
from openft.training.events import EVENTS_FILE, EventReader

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0
REAP_EVERY = 5.0
KILL_GRACE = 3.0


def _die_with_parent() -> None:
    """In the child: be killed if the worker dies, so no training runs without a worker behind it."""
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _format_metrics_message(m: dict[str, Any]) -> str:
    text = f"Step {m['step']}/{m['total_steps']}: training loss={m['train_loss']:.2f}"
    if m.get("valid_loss") is not None:
        text += f", validation loss={m['valid_loss']:.2f}"
    if m.get("full_valid_loss") is not None:
        text += f", full validation loss={m['full_valid_loss']:.2f}"
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
)


@dataclass
class Running:
    """The job this worker is training right now."""

    job: JobRow
    process: subprocess.Popen[bytes]
    output_dir: Path
    reader: EventReader
    log_file: IO[bytes]
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    last_heartbeat: float = 0.0
    kill_sent_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Worker:
    def __init__(self, settings: Settings, store: Store, *, worker_id: str | None = None):
        self.settings = settings
        self.store = store
        self.files = FileService(settings, store)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.running: Running | None = None
        self._last_reap = 0.0

    # -- main loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; a job still training then goes back to the queue."""
        log.info("worker %s started", self.worker_id)
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
        return did

    def shutdown(self) -> None:
        if self.running is None:
            return
        job_id = self.running.job.id
        self._kill(self.running, force=True)
        self.running.process.wait()
        self._close(self.running)
        self.running = None
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
        report = validate_file(self._file_path(job, job.training_file), method, purpose="training")
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
                self._file_path(job, job.validation_file), method, purpose="validation", min_examples=1
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
        for warning in report.warnings[:5]:
            self.store.append_event(job.id, warning.message, level="warn")
        resolved = hyperparameters.resolve(job.hyperparameters, report.n_examples).as_dict()
        method_obj = dict(job.method)
        method_obj[method] = {**method_obj.get(method, {}), "hyperparameters": resolved}
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
        # A fresh attempt starts clean: what an earlier, interrupted attempt wrote is discarded.
        if output_dir.exists():
            shutil.rmtree(output_dir)
        for ckpt in self.store.list_checkpoints(job.id, limit=1000)[0]:
            self.store.delete_checkpoint(job.id, ckpt.step_number)
        output_dir.mkdir(parents=True)
        spec_path = output_dir / "spec.json"
        spec.write(spec_path)
        self.store.update_job(job.id, started_at=int(time.time()))
        self.store.append_event(job.id, "Fine-tuning job started")
        log_file = (output_dir / "train.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        process = subprocess.Popen(
            [sys.executable, "-m", "openft.training", str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            env=env,
            cwd=str(output_dir),
        )
        self.running = Running(
            job=job,
            process=process,
            output_dir=output_dir,
            reader=EventReader(output_dir / EVENTS_FILE),
            log_file=log_file,
            last_heartbeat=time.time(),
        )
        log.info("job %s: training process %d started", job.id, process.pid)
        return True

    def pump_running(self) -> bool:
        run = self.running
        assert run is not None
        now = time.time()
        current = self.store.get_job(run.job.id)
        if current.status != st.RUNNING or current.worker_id != self.worker_id:
            # Cancelled (or taken from us): stop the training process now; its later lines are moot.
            if run.process.poll() is None:
                self._kill(run, force=run.kill_sent_at is not None and now - run.kill_sent_at > KILL_GRACE)
                return False
            self._close(run)
            self.running = None
            log.info("job %s: training stopped (status %s)", run.job.id, current.status)
            return True
        lines = run.reader.read_new()
        for line in lines:
            self._handle_line(run, line)
        if now - run.last_heartbeat > HEARTBEAT_EVERY:
            run.last_heartbeat = now
            self.store.heartbeat(run.job.id, self.worker_id, now)
        code = run.process.poll()
        if code is None:
            return bool(lines)
        for line in run.reader.read_new():  # lines written just before exit
            self._handle_line(run, line)
        self._close(run)
        self.running = None
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
            self.store.append_event(job_id, line["message"], level=line.get("level", "info"), data=line.get("data"))
        elif kind == "metrics":
            data = {k: line[k] for k in METRIC_KEYS if line.get(k) is not None}
            self.store.append_event(job_id, _format_metrics_message(line), type="metrics", data=data)
            step, total, elapsed = line["step"], line["total_steps"], line.get("elapsed_seconds")
            if elapsed and step:
                eta = int(time.time() + (total - step) * (elapsed / step))
                self.store.update_job(job_id, expect_status=st.RUNNING, estimated_finish=eta)
        elif kind == "checkpoint":
            name = ids.checkpoint_model_name(run.job.model_name, line["step"])
            adapter = run.output_dir / line["path"]
            self.store.add_checkpoint(
                CheckpointRow(
                    id=ids.new_checkpoint_id(),
                    job_id=job_id,
                    organization_id=run.job.organization_id,
                    created_at=int(time.time()),
                    step_number=line["step"],
                    fine_tuned_model_checkpoint=name,
                    metrics={k: v for k, v in line.get("metrics", {}).items() if v is not None},
                    adapter_path=str(adapter.relative_to(self.settings.home)),
                )
            )
            self.store.append_event(job_id, f"Checkpoint created at step {line['step']} with Snapshot ID: {name}")
        elif kind == "checkpoint_deleted":
            self.store.delete_checkpoint(job_id, line["step"])
        elif kind == "result":
            run.result = line
        elif kind == "error":
            run.error = {"code": line["code"], "message": line["message"], "param": line.get("param")}

    def _succeed(self, run: Running) -> None:
        job, result = run.job, run.result or {}
        result_files: list[str] = []
        csv_path = run.output_dir / result.get("results_csv", "results.csv")
        if csv_path.exists():
            row = self.files.create_from_path(
                job.organization_id, csv_path, filename="step_metrics.csv", purpose="fine-tune-results"
            )
            result_files.append(row.id)
        adapter = run.output_dir / result.get("adapter_path", "adapter")
        done = self.store.update_job(
            job.id,
            expect_status=st.RUNNING,
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

    def _kill(self, run: Running, *, force: bool) -> None:
        sig = signal.SIGKILL if force else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, sig)
        if run.kill_sent_at is None:
            run.kill_sent_at = time.time()

    def _close(self, run: Running) -> None:
        with contextlib.suppress(Exception):
            run.process.wait(timeout=1)
        run.log_file.close()

    def _log_tail(self, run: Running, lines: int = 3) -> str:
        try:
            text = (run.output_dir / "train.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])[-1000:]

    # -- reaper --------------------------------------------------------------------------------
    def reap_stale_jobs(self, now: float) -> None:
        """Take running jobs back from workers that stopped heartbeating."""
        stale_before = now - self.settings.heartbeat_timeout_seconds
        for job in self.store.stale_jobs([st.RUNNING], stale_before):
            if self.running is not None and job.id == self.running.job.id:
                continue
            attempts = job.attempts + 1
            if attempts < self.settings.max_job_attempts:
                if self.store.update_job(
                    job.id,
                    expect_status=st.RUNNING,
                    expect_worker=job.worker_id,
                    status=st.QUEUED,
                    worker_id=None,
                    attempts=attempts,
                    estimated_finish=None,
                ):
                    self.store.append_event(
                        job.id,
                        f"The worker running this job stopped responding; the job was re-queued "
                        f"(attempt {attempts + 1} of {self.settings.max_job_attempts})",
                        level="warn",
                    )
            else:
                error = {
                    "code": "worker_lost",
                    "param": None,
                    "message": f"The worker running this job stopped responding {attempts} times.",
                }
                if self.store.update_job(
                    job.id,
                    expect_status=st.RUNNING,
                    expect_worker=job.worker_id,
                    status=st.FAILED,
                    error=error,
                    finished_at=int(now),
                    estimated_finish=None,
                ):
                    self.store.append_event(job.id, error["message"], level="error")
