"""Storage rows: plain dataclasses, not wire models (each has one ``to_wire`` converter in api/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FileRow:
    id: str
    organization_id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    blob_path: str
    project_id: str | None = None
    expires_at: int | None = None


@dataclass
class JobRow:
    id: str
    organization_id: str
    model: str
    training_file: str
    validation_file: str | None
    status: str
    method: dict[str, Any]
    hyperparameters: dict[str, Any]
    seed: int
    model_name: str
    """The name the model gets on success; exposed as ``fine_tuned_model`` only then."""
    created_at: int
    suffix: str | None = None
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None
    project_id: str | None = None
    fine_tuned_model: str | None = None
    error: dict[str, Any] | None = None
    result_files: list[str] = field(default_factory=list)
    trained_tokens: int | None = None
    estimated_finish: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    worker_id: str | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    model_deleted: bool = False
    parent_job_id: str | None = None
    """The job whose fine-tuned model or checkpoint (``model``) this job starts from; None: a base model."""
    base_model: str | None = None
    """The root base model of the chain; None when ``model`` is itself a base model."""
    openft: dict[str, Any] | None = None
    """Early stopping's outcome (best step and validation loss, the step it stopped at), once succeeded."""


@dataclass
class EventRow:
    id: str
    job_id: str
    created_at: int
    level: str
    type: str
    message: str
    data: dict[str, Any] | None
    seq: int = 0


@dataclass
class CheckpointRow:
    id: str
    job_id: str
    organization_id: str
    created_at: int
    step_number: int
    fine_tuned_model_checkpoint: str
    metrics: dict[str, Any]
    adapter_path: str
