"""The ``fine_tuning.job`` object and the request that creates it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    """Requested (possibly ``"auto"``) or resolved hyperparameters."""

    model_config = ConfigDict(extra="forbid")
    batch_size: Auto | int | None = Field(default="auto")
    learning_rate_multiplier: Auto | float | None = Field(default="auto")
    n_epochs: Auto | int | None = Field(default="auto")


class DpoHyperparameters(Hyperparameters):
    beta: Auto | Annotated[float, Field(gt=0, le=2)] | None = Field(default="auto")


class EarlyStopping(BaseModel):
    """``method.<type>.openft.early_stopping``: stop when the validation loss stops improving (needs a validation file).

    The full validation set is scored every ``eval_every_steps`` steps (and at each epoch's end); after
    ``patience`` evaluations without a decrease of at least ``min_delta`` the job stops, and its model is
    the checkpoint with the lowest validation loss.
    """

    model_config = ConfigDict(extra="forbid")
    eval_every_steps: int = Field(ge=1)
    patience: int = Field(ge=1)
    min_delta: float = Field(default=0.0, ge=0)


class OpenftTrainingOptions(BaseModel):
    """openft's own options, ``method.supervised.openft`` / ``method.dpo.openft``: LoRA or full fine-tuning.

    Absent fields take the defaults: LoRA with r=16, alpha=32, dropout 0 on every linear layer.
    """

    model_config = ConfigDict(extra="forbid")
    training_type: Literal["lora", "full"] = "lora"
    """``full`` trains every weight and saves a whole model instead of an adapter."""
    lora_rank: int | None = Field(default=None, ge=1, le=512)
    lora_alpha: float | None = Field(default=None, gt=0)
    lora_dropout: float | None = Field(default=None, ge=0, lt=1)
    target_modules: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    """Module names LoRA adapts, e.g. ``["q_proj", "v_proj"]``; default every linear layer but the head."""
    early_stopping: EarlyStopping | None = None
    """Off unless given; see :class:`EarlyStopping`."""

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: Any) -> dict[str, Any]:
        # Only what the job asked for; absent options mean the documented defaults.
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}

    @model_validator(mode="after")
    def _lora_options_need_lora(self) -> OpenftTrainingOptions:
        names = ("lora_rank", "lora_alpha", "lora_dropout", "target_modules")
        lora = [k for k in names if getattr(self, k) is not None]
        if self.training_type == "full" and lora:
            raise ValueError(f"{', '.join(lora)} only apply when training_type is 'lora'")
        return self


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters | None = None
    openft: OpenftTrainingOptions | None = None


class DpoMethod(BaseModel):
    hyperparameters: DpoHyperparameters | None = None
    openft: OpenftTrainingOptions | None = None


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


class MlflowSettings(BaseModel):
    """openft's own integration type: metrics logged to an MLflow tracking server or ``file://`` folder."""

    tracking_uri: str | None = None
    experiment_name: str | None = None
    run_name: str | None = None
    """Default: the job id."""


class Integration(BaseModel):
    type: Literal["wandb", "mlflow"]
    wandb: WandbSettings | None = None
    mlflow: MlflowSettings | None = None

    @model_validator(mode="after")
    def _settings_for_type(self) -> Integration:
        if self.type == "wandb" and self.wandb is None:
            raise ValueError("an integration of type 'wandb' needs a 'wandb' object")
        if self.type == "mlflow" and self.mlflow is None:
            raise ValueError("an integration of type 'mlflow' needs an 'mlflow' object")
        return self

    @model_serializer(mode="wrap")
    def _without_other_settings(self, handler: Any) -> dict[str, Any]:
        # The wire object carries only its own type's settings, as OpenAI's ``{"type": "wandb", "wandb": {...}}``.
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in ("type", self.type)}


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobOpenftOutcome(BaseModel):
    """``fine_tuning.job.openft``: what early stopping chose, on a job that succeeded with it."""

    best_step: int
    """The step whose checkpoint is the fine-tuned model: the lowest full validation loss."""
    best_valid_loss: float
    stopped_early_at_step: int | None = None
    """The step the job stopped at; None when it trained all its epochs."""


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
    openft: JobOpenftOutcome | None = None
    """openft's extension: early stopping's outcome; null unless the job succeeded with early stopping."""


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
