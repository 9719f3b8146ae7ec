"""``fine_tuning.job.estimate``: what a job would train, how much memory and time it would take.

openft's own object (OpenAI has no estimate endpoint): ``POST /v1/fine_tuning/jobs/estimate`` takes the
body of ``fine_tuning.jobs.create`` and answers this without creating a job. The official clients
reach it with ``client.post("/fine_tuning/jobs/estimate", body=..., cast_to=object)``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from openft.types.fine_tuning.fine_tuning_job import Hyperparameters, Method

EstimatedSecondsSource = Literal["previous_jobs", "calibration", "unavailable"]


class FileEstimate(BaseModel):
    """What training would make of one input file."""

    id: str
    """The file's id."""
    n_examples: int
    """Examples in the file (non-blank lines); ``"auto"`` hyperparameters are resolved from this count."""
    n_trained_examples: int
    """Examples that would be trained on: those left with no trainable token (every assistant weight 0,
    or its tokens truncated away) are skipped, as the training process skips them."""
    n_tokens: int
    """Tokens of the trained examples, once each, after truncation (both sides of a DPO pair)."""
    n_truncated: int
    """Examples longer than the training context; they are cut to it."""
    truncated_lines: list[int]
    """1-based line numbers of the first truncated examples (at most 20)."""


class FineTuningJobEstimate(BaseModel):
    """A job's estimate, computed from its files and this server's own measurements."""

    object: Literal["fine_tuning.job.estimate"] = "fine_tuning.job.estimate"
    model: str
    training_file: FileEstimate
    validation_file: FileEstimate | None = None
    hyperparameters: Hyperparameters
    """The resolved values of the three hyperparameters every method has (``"auto"`` resolved)."""
    method: Method
    """The method with every hyperparameter resolved, as the job would get it once validated."""
    training_type: Literal["lora", "full"]
    n_steps: int
    """Optimizer steps over all epochs."""
    trained_tokens: int
    """Tokens trained over all epochs: the job's ``trained_tokens`` once it has succeeded (reinforcement:
    an upper bound, since completions end when the model stops; with early stopping, the most it trains)."""
    trained_tokens_exact: bool
    """False for reinforcement and with early stopping, where ``trained_tokens`` is the most the job can train."""
    device: Literal["cpu", "cuda"]
    """Where this server's training processes run."""
    peak_memory_bytes: int
    """Estimated peak memory of the training process on ``device``: weights, gradients, optimizer
    state, the largest step's activations and the runtime."""
    memory_limit_bytes: int
    """What a training process may use here: ``OPENFT_TRAINING_MEMORY_LIMIT_MB`` when set, else the
    device's memory (RAM within the cgroup limit, or the GPU's)."""
    fits: bool
    """Whether ``peak_memory_bytes`` is within ``memory_limit_bytes``."""
    reason: str | None = None
    """Why the job would not fit, and what to change; None when it fits."""
    estimated_seconds: float | None
    """Time the job would spend running (from the start of training to its result); None when this
    server has no measured throughput for the model, method and device and could not calibrate one."""
    estimated_seconds_source: EstimatedSecondsSource
    """``previous_jobs`` (this server's last job of the same model, method and training type),
    ``calibration`` (a short measured run, cached per model, method and device) or ``unavailable``."""
    tokens_per_second: float | None
    """The measured training throughput ``estimated_seconds`` comes from."""
