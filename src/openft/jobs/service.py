"""JobService: create, list, retrieve and cancel jobs, and read their events and checkpoints.

The API and the CLI both go through here, so there is one implementation of each operation.
Validation and training happen later, in a worker (``jobs/worker.py``).
"""

from __future__ import annotations

import builtins
import secrets
import time
from typing import Any

from openft import ids
from openft.errors import InvalidJobState, InvalidRequest, JobNotFound, ModelNotFound, RateLimitExceeded
from openft.files.service import FileService
from openft.jobs import hyperparameters
from openft.jobs import status as st
from openft.jobs.lineage import Parent, check_continuation, starting_point
from openft.jobs.reinforcement import check_reinforcement_method
from openft.jobs.transitions import transition
from openft.models.catalog import BaseModel, find_base_model
from openft.store import Store
from openft.store.rows import CheckpointRow, EventRow, JobRow
from openft.tenancy import Principal
from openft.types.fine_tuning.fine_tuning_job import JobCreateParams

SUPPORTED_METHODS = ("supervised", "dpo", "reinforcement")


def _storable(text: str) -> bool:
    """NUL and unpaired surrogates cannot be stored as text (PostgreSQL and UTF-8 refuse them)."""
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if not all(_storable(k) and _storable(v) for k, v in metadata.items()):
        raise InvalidRequest("metadata cannot contain NUL characters or unpaired surrogates.", param="metadata")
    if len(metadata) > 16:
        raise InvalidRequest("metadata can have at most 16 key-value pairs.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64:
            raise InvalidRequest(f"metadata key '{key[:70]}' is longer than 64 characters.", param="metadata")
        if len(value) > 512:
            raise InvalidRequest(f"metadata value for '{key}' is longer than 512 characters.", param="metadata")


def _requested_method(params: JobCreateParams) -> dict[str, Any]:
    """The job's ``method`` object; the legacy top-level ``hyperparameters`` mean supervised."""
    legacy = params.hyperparameters.model_dump() if params.hyperparameters else None
    if params.method is None:
        hyper = legacy or {"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}
        return {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    method = params.method.model_dump(exclude_none=True)
    kind = method["type"]
    if kind not in SUPPORTED_METHODS:
        raise InvalidRequest(
            f"Fine-tuning method '{kind}' is not supported; use one of {', '.join(SUPPORTED_METHODS)}.",
            param="method.type",
            code="unsupported_method",
        )
    section = method.setdefault(kind, {})
    hyper = section.get("hyperparameters") or {}
    if legacy is not None:
        if hyper and hyper != legacy:
            raise InvalidRequest(
                "Pass hyperparameters either in method or at the top level, not both.", param="hyperparameters"
            )
        hyper = legacy
    # The common three default to "auto"; a method's own (DPO's beta, ...) are kept as requested.
    section["hyperparameters"] = {
        **{k: hyper.get(k, "auto") for k in hyperparameters.COMMON},
        **{k: v for k, v in hyper.items() if k not in hyperparameters.COMMON},
    }
    return method


def _check_early_stopping(method: dict[str, Any], validation_file: str | None) -> None:
    """Early stopping watches the validation loss, so it needs a validation file."""
    kind = method["type"]
    if (method.get(kind) or {}).get("openft", {}).get("early_stopping") and not validation_file:
        raise InvalidRequest(
            "Early stopping needs a validation file: it stops when the validation loss stops improving.",
            param="validation_file",
        )


class JobService:
    """Job operations for the API and the CLI, over any :class:`~openft.store.base.Store`."""

    def __init__(self, store: Store, files: FileService):
        self.store = store
        self.files = files

    def create(self, principal: Principal, params: JobCreateParams) -> JobRow:
        """Check the request, store the job in ``validating_files`` and log its first events.

        Raises:
            ModelNotFound: the model is not in the catalog, nor a fine-tuned model or checkpoint the caller
                may use.
            InvalidRequest: a file is missing, not for fine-tuning, or an argument is invalid.
            RateLimitExceeded: the organization already has its maximum of active jobs.
        """
        limit = self.files.settings.max_active_jobs_per_organization
        if self.store.count_jobs(principal.organization_id, st.ACTIVE) >= limit:
            raise RateLimitExceeded(
                f"This fine-tune request has been rate-limited. Your organization has reached the maximum of "
                f"{limit} active fine-tuning jobs (validating, queued, running or paused)."
            )
        parent, _, method = self.checked_request(principal, params)
        seed = params.seed if params.seed is not None else secrets.randbelow(2_147_483_648)
        model_name = ids.fine_tuned_model_name(
            parent.root if parent else params.model,
            ids.organization_slug(principal.organization_id),
            params.suffix,
            ids.new_model_short_id(),
        )
        job = JobRow(
            id=ids.new_job_id(),
            organization_id=principal.organization_id,
            project_id=principal.project_id,
            model=params.model,
            training_file=params.training_file,
            validation_file=params.validation_file,
            status=st.VALIDATING,
            method=method,
            hyperparameters={k: method[method["type"]]["hyperparameters"][k] for k in hyperparameters.COMMON},
            seed=seed,
            model_name=model_name,
            created_at=int(time.time()),
            suffix=params.suffix,
            metadata=params.metadata,
            integrations=[i.model_dump() for i in params.integrations or []] or None,
            parent_job_id=parent.job.id if parent else None,
            base_model=parent.root if parent else None,
        )
        self.store.insert_job(job)
        self.store.append_event(job.id, f"Created fine-tuning job: {job.id}")
        files = f"Validating training file: {job.training_file}"
        if job.validation_file:
            files += f" and validation file: {job.validation_file}"
        self.store.append_event(job.id, files)
        return job

    def checked_request(
        self, principal: Principal, params: JobCreateParams
    ) -> tuple[Parent | None, BaseModel, dict[str, Any]]:
        """The checks of a job create that need no job: ``(parent, base model, requested method)``.

        Creating a job and estimating one (``jobs/estimate.py``) both run them, so an estimate refuses
        exactly what a create would (the active-job limit aside).

        Raises:
            ModelNotFound: the model is not in the catalog, nor a fine-tuned model or checkpoint the caller
                may use.
            InvalidRequest: a file is missing or not for fine-tuning, or an argument is invalid.
        """
        parent = starting_point(self.store, self.files.settings, principal, params.model)
        base = parent.weights.base if parent else find_base_model(params.model, self.store.local_models())
        if base is None:
            raise ModelNotFound(
                f"The model `{params.model}` does not exist or you do not have access to it.", param="model"
            )
        _check_metadata(params.metadata)
        if params.suffix is not None and not _storable(params.suffix):
            raise InvalidRequest("suffix cannot contain NUL characters or unpaired surrogates.", param="suffix")
        method = _requested_method(params)
        if parent is not None:
            check_continuation(method, parent.weights)
        if method["type"] == "reinforcement":
            allow = self.files.settings.allow_unconfined_python_graders
            check_reinforcement_method(method, params.validation_file, allow_unconfined_python=allow)
        _check_early_stopping(method, params.validation_file)
        self.check_input_file(principal, params.training_file, "training_file")
        if params.validation_file:
            self.check_input_file(principal, params.validation_file, "validation_file")
        return parent, base, method

    def check_input_file(self, principal: Principal, file_id: str, param: str) -> None:
        """The file exists for the caller and has purpose ``fine-tune``.

        Raises:
            InvalidRequest: it does not.
        """
        try:
            row = self.files.get(principal, file_id)
        except Exception as exc:
            raise InvalidRequest(f"File {file_id} does not exist.", param=param, code="invalid_file") from exc
        if row.purpose != "fine-tune":
            raise InvalidRequest(
                f"File {file_id} has purpose '{row.purpose}'; fine-tuning needs purpose 'fine-tune'.",
                param=param,
                code="invalid_file_purpose",
            )

    def get(self, principal: Principal, job_id: str) -> JobRow:
        if not ids.is_valid_id("job", job_id):
            raise JobNotFound(f"No such fine-tuning job: {job_id[:100]}", param="fine_tuning_job_id")
        return self.store.get_job(job_id, principal.organization_id)

    def list(
        self, principal: Principal, *, after: str | None, limit: int, metadata: dict[str, str] | None
    ) -> tuple[list[JobRow], bool]:
        return self.store.list_jobs(principal.organization_id, after=after, limit=limit, metadata=metadata)

    def cancel(self, principal: Principal, job_id: str) -> JobRow:
        """Cancel a job that has not finished; its worker kills the training process within seconds.

        Raises:
            JobNotFound: no such job for this organization.
            InvalidJobState: the job has already finished.
        """
        job = self.get(principal, job_id)
        changed = transition(
            self.store,
            job_id,
            st.CANCELLED,
            expect=st.sources_of(st.CANCELLED),
            events=["Fine-tuning job cancelled"],
            finished_at=int(time.time()),
            estimated_finish=None,
        )
        if not changed:
            job = self.get(principal, job_id)
            raise InvalidJobState(
                f"Job {job_id} has already {job.status}; it cannot be cancelled.", param="fine_tuning_job_id"
            )
        return self.get(principal, job_id)

    def pause(self, principal: Principal, job_id: str) -> JobRow:
        """Pause a queued or running job. A running job's worker then has the training process save a
        checkpoint at the end of its step and stop; ``resume`` continues from that checkpoint.

        Raises:
            JobNotFound: no such job for this organization.
            InvalidJobState: the job is not queued or running.
        """
        job = self.get(principal, job_id)
        # The worker keeps its claim (worker_id) until the training process has stopped.
        paused = transition(
            self.store, job_id, st.PAUSED, expect=st.sources_of(st.PAUSED), events=["Fine-tuning job paused"]
        )
        if not paused:
            job = self.get(principal, job_id)
            raise InvalidJobState(
                f"Job {job_id} is {job.status}; only queued or running jobs can be paused.",
                param="fine_tuning_job_id",
            )
        return self.get(principal, job_id)

    def resume(self, principal: Principal, job_id: str) -> JobRow:
        """Put a paused job back in the queue; it continues from the checkpoint its pause saved.

        Raises:
            JobNotFound: no such job for this organization.
            InvalidJobState: the job is not paused.
        """
        job = self.get(principal, job_id)
        if not transition(self.store, job_id, st.QUEUED, expect=st.PAUSED, events=["Fine-tuning job resumed"]):
            job = self.get(principal, job_id)
            raise InvalidJobState(
                f"Job {job_id} is {job.status}; only paused jobs can be resumed.", param="fine_tuning_job_id"
            )
        return self.get(principal, job_id)

    def events(
        self, principal: Principal, job_id: str, *, after: str | None, limit: int
    ) -> tuple[builtins.list[EventRow], bool]:
        self.get(principal, job_id)
        return self.store.list_events(job_id, after=after, limit=limit)

    def checkpoints(
        self, principal: Principal, job_id: str, *, after: str | None, limit: int
    ) -> tuple[builtins.list[CheckpointRow], bool]:
        self.get(principal, job_id)
        return self.store.list_checkpoints(job_id, after=after, limit=limit)
