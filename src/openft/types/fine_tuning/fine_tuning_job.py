"""The ``fine_tuning.job`` object and the request that creates it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    """Requested (possibly ``"auto"``) or resolved hyperparameters."""

    model_config = ConfigDict(extra="forbid")
    batch_size: Auto | int | None = Field(default="auto")
    learning_rate_multiplier: Auto | float | None = Field(default="auto")
    n_epochs: Auto | int | None = Field(default="auto")


class DpoHyperparameters(Hyperparameters):
    beta: Auto | float | None = Field(default="auto")


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters | None = None


class DpoMethod(BaseModel):
    hyperparameters: DpoHyperparameters | None = None


class Method(BaseModel):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: dict[str, Any] | None = None


class WandbSettings(BaseModel):
    project: str
    entity: str | None = None
    name: str | None = None
    tags: list[str] | None = None


class Integration(BaseModel):
    type: Literal["wandb"]
    wandb: WandbSettings


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    created_at: int
    error: JobError | None
    """Why the job failed; None unless ``status`` is ``failed``."""
    fine_tuned_model: str | None
    """The model's name; None until the job has succeeded."""
    finished_at: int | None
    hyperparameters: Hyperparameters
    """The resolved values once ``validating_files`` is over; ``"auto"`` before."""
    model: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    organization_id: str
    result_files: list[str]
    seed: int
    status: JobStatus
    trained_tokens: int | None
    """Tokens trained over all epochs; None until the job has succeeded."""
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    """Forecast from measured throughput while running; None otherwise."""
    integrations: list[Integration] | None = None
    metadata: dict[str, str] | None = None
    method: Method
    user_provided_suffix: str | None = None


class FineTuningJobEvent(BaseModel):
    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] = "message"


class FineTuningJobCheckpoint(BaseModel):
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, float]
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    step_number: int


class JobCreateParams(BaseModel):
    """``POST /v1/fine_tuning/jobs``; unknown fields are rejected as OpenAI does."""

    model_config = ConfigDict(extra="forbid")
    model: str
    training_file: str
    hyperparameters: Hyperparameters | None = None
    """Deprecated by OpenAI in favour of ``method``; still honoured."""
    integrations: list[Integration] | None = Field(default=None, max_length=5)
    metadata: dict[str, str] | None = None
    method: Method | None = None
    seed: int | None = Field(default=None, ge=0, le=2147483647)
    suffix: str | None = Field(default=None, min_length=1, max_length=64)
    validation_file: str | None = None
