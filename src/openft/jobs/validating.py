"""A job's ``validating_files`` step: check its files, pin them, resolve ``"auto"`` hyperparameters, queue it.

The worker runs this while it holds the job (:class:`~openft.jobs.claim.Claim`). Reading a file
line by line and copying it both call the claim's ``progress`` as they go, so a job taken over or
cancelled meanwhile stops being validated at once; the outcome (``queued``, or ``failed`` with the
first problem found) is written only if the worker still holds the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from openft.data.validation import FileReport, first_error_message, validate_file
from openft.files.service import FileService
from openft.jobs import hyperparameters
from openft.jobs import status as st
from openft.jobs.claim import Claim
from openft.jobs.estimate import InputFile
from openft.jobs.recovery import pin_input, pinned_input
from openft.jobs.run_report import EstimateTimeUp, save_estimate
from openft.jobs.transitions import NewEvent, fail, transition
from openft.settings import Settings
from openft.store import Store
from openft.store.rows import JobRow

log = logging.getLogger(__name__)

MAX_WARNING_EVENTS = 5
MIN_ESTIMATE_SECONDS = 10.0
"""The estimate a worker makes while validating may take as long as validation took, and at least this.

Counting trained tokens renders every example's chat template, several times slower than validating
it; unbounded, it would multiply the time a big file spends in ``validating_files``. A job whose
estimate runs out of time starts without one (``POST /v1/fine_tuning/jobs/estimate`` still counts it
all)."""


def _bounded(progress: Callable[[], None], seconds: float) -> Callable[[], None]:
    deadline = time.monotonic() + seconds

    def check() -> None:
        progress()
        if time.monotonic() > deadline:
            raise EstimateTimeUp(f"the estimate took more than {seconds:.0f} s")

    return check


def input_path(settings: Settings, store: Store, files: FileService, job: JobRow, file_id: str) -> Path:
    """The local path of one of the job's input files (its pinned copy once validated)."""
    # Validated inputs are pinned in the job's directory: a file deleted since stays readable to it.
    pinned = pinned_input(settings.jobs_dir / job.id, file_id)
    if pinned is not None:
        return pinned
    return files.local_path(store.get_file(file_id, job.organization_id))


class Validation:
    """Validates the files of jobs that one worker claims."""

    def __init__(self, settings: Settings, store: Store, files: FileService):
        self.settings = settings
        self.store = store
        self.files = files

    def run(self, job: JobRow, claim: Claim) -> None:
        """Validate ``job``'s files and queue it, or fail it with the first problem found.

        Raises:
            ClaimLost: the worker no longer holds the job; nothing more was written.
            OpenFTError: a file cannot be read (the caller fails the job with it).
        """
        log.info("job %s: validating its files", job.id)
        started = time.monotonic()
        method = job.method["type"]
        report = self._check(job, claim, job.training_file, "training")
        if report is None:
            return
        valid_report = None
        if job.validation_file:
            valid_report = self._check(job, claim, job.validation_file, "validation")
            if valid_report is None:
                return
        for file_id in filter(None, (job.training_file, job.validation_file)):
            source = input_path(self.settings, self.store, self.files, job, file_id)
            claim.check()
            pin_input(self.settings.jobs_dir / job.id, file_id, source, progress=claim.progress)
        budget = max(MIN_ESTIMATE_SECONDS, time.monotonic() - started)
        self._estimate(job, claim, report, valid_report, budget)
        # The method's own section holds every requested value (beta for DPO, ...); the job's
        # top-level hyperparameters carry the three all methods share.
        requested = (job.method.get(method) or {}).get("hyperparameters") or job.hyperparameters
        resolved_all = hyperparameters.resolve_method(method, requested, report.n_examples)
        method_obj = dict(job.method)
        method_obj[method] = {**method_obj.get(method, {}), "hyperparameters": resolved_all}
        warnings = [NewEvent(w.message, level="warn") for w in report.warnings[:MAX_WARNING_EVENTS]]
        transition(
            self.store,
            job.id,
            st.QUEUED,
            expect=st.VALIDATING,
            worker=claim.worker_id,
            events=[*warnings, "Files validated, moving job to queued state"],
            worker_id=None,
            hyperparameters={k: resolved_all[k] for k in hyperparameters.COMMON},
            method=method_obj,
        )

    def _estimate(
        self, job: JobRow, claim: Claim, training: FileReport, validation: FileReport | None, seconds: float
    ) -> None:
        """Keep the job's estimate for its events (``jobs/run_report.py``); never fails the job."""

        def pinned(file_id: str, report: FileReport) -> InputFile:
            return InputFile(file_id, input_path(self.settings, self.store, self.files, job, file_id), report)

        valid = pinned(job.validation_file, validation) if job.validation_file and validation else None
        train = pinned(job.training_file, training)
        save_estimate(self.settings, self.store, job, train, valid, progress=_bounded(claim.progress, seconds))

    def _check(self, job: JobRow, claim: Claim, file_id: str, purpose: str) -> FileReport | None:
        """Validate one file; None when it failed the job."""
        path = input_path(self.settings, self.store, self.files, job, file_id)
        claim.check()
        report = validate_file(
            path,
            job.method["type"],
            purpose=purpose,
            max_examples=self.settings.max_examples_per_file,
            progress=claim.progress,
        )
        if report.ok:
            return report
        problem = first_error_message(report, file_kind=purpose)
        assert problem is not None
        error = {"code": problem.code, "message": problem.message, "param": f"{purpose}_file"}
        fail(self.store, job.id, error, expect=st.VALIDATING, worker=claim.worker_id)
        return None
