"""A job's estimate before it trains: what it would train, its peak memory, and how long it would run.

``POST /v1/fine_tuning/jobs/estimate`` (``openft jobs estimate``) runs :meth:`JobEstimator.estimate` on
the body of a job create, without creating one: the create checks (``jobs/service.py``), the worker's
file validation (``data/validation.py``: the same errors, naming the line), ``"auto"`` hyperparameters
resolved as validation resolves them, then every example tokenized as its training process would
(``jobs/estimate_tokens.py``), the memory model of ``jobs/memory_estimate.py`` and this server's
measured throughput (``jobs/throughput.py``). The worker makes the same estimate for each job it
validates (:func:`estimate_files`, never calibrating), so the job's events can compare it with the run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openft.data.chat_messages import TrainingDataError
from openft.data.tokenize import tokenizer_directory
from openft.data.validation import FileReport, first_error_message, validate_file
from openft.errors import InvalidRequest
from openft.files.service import FileService
from openft.jobs import hyperparameters, throughput
from openft.jobs import memory_estimate as mem
from openft.jobs.estimate_tokens import FileTokens, TemplateTokenizer, count_trained_tokens
from openft.jobs.service import JobService
from openft.jobs.spec import FULL_FINE_TUNING_LR_SCALE, MAX_SEQ_LEN_CAP
from openft.models.catalog import BaseModel
from openft.settings import Settings
from openft.tenancy import Principal
from openft.types.fine_tuning.fine_tuning_job import JobCreateParams
from openft.types.fine_tuning.job_estimate import FileEstimate, FineTuningJobEstimate

# Reinforcement's sampling budget (``training/recipes/reinforcement.py``; a unit test keeps them equal).
RFT_BASE_GROUP_SIZE = 4
RFT_BASE_NEW_TOKENS = 64
RFT_EFFORT_SCALE = {"low": 0.5, "default": 1.0, "medium": 1.0, "high": 2.0}
VALID_SAMPLE_SIZE = 32
"""Validation examples a supervised or DPO run scores at each evaluation (``recipes/supervised.py``)."""
AUTO_EVALUATIONS = 10
CALIBRATION_SAMPLE_LINES = 64


@dataclass(frozen=True)
class InputFile:
    """A job's input file, validated."""

    id: str
    path: Path
    report: FileReport


def throughput_cache_dir(settings: Settings) -> Path:
    return settings.home / "cache" / "throughput"


def options_of(method: dict[str, Any]) -> dict[str, Any]:
    """``method.<type>.openft``: the training type and LoRA shape, defaults filled in."""
    options = (method.get(method["type"]) or {}).get("openft") or {}
    return {
        "training_type": options.get("training_type") or "lora",
        "lora_rank": int(options.get("lora_rank") or 16),
        "lora_alpha": options.get("lora_alpha") or 32,
        "lora_dropout": float(options.get("lora_dropout") or 0.0),
        "lora_target_modules": options.get("target_modules"),
        "early_stopping": options.get("early_stopping"),
    }


def throughput_key(
    settings: Settings, model: str, method: str, training_type: str, device: str
) -> throughput.ThroughputKey:
    threads = settings.training_threads or os.cpu_count() or 1
    return throughput.ThroughputKey(model, method, training_type, device, threads)


def _max_seq_len(base: BaseModel, method: str, resolved: dict[str, Any]) -> int:
    context = min(base.context_length, MAX_SEQ_LEN_CAP)
    if method != "reinforcement":
        return context
    effort = str(resolved.get("reasoning_effort") or "default")
    return max(16, context - max(8, round(RFT_BASE_NEW_TOKENS * RFT_EFFORT_SCALE.get(effort, 1.0))))


def _trained_tokens(method: str, resolved: dict[str, Any], tokens: FileTokens) -> int:
    epochs = int(resolved["n_epochs"])
    if method != "reinforcement":
        return epochs * tokens.n_tokens
    group = max(2, min(64, round(RFT_BASE_GROUP_SIZE * float(resolved.get("compute_multiplier") or 1.0))))
    effort = str(resolved.get("reasoning_effort") or "default")
    new_tokens = max(8, round(RFT_BASE_NEW_TOKENS * RFT_EFFORT_SCALE.get(effort, 1.0)))
    return epochs * group * (tokens.n_tokens + new_tokens * tokens.n_trained_examples)


def eval_tokens(n_steps: int, epochs: int, n_examples: int, n_tokens: int) -> int:
    """Validation tokens scored over a run (``n_examples`` of ``n_tokens`` in the validation file): a
    sample at about ten steps and at each epoch's end, and the whole set at each epoch's end."""
    if not n_examples:
        return 0
    sample = min(VALID_SAMPLE_SIZE, n_examples)
    evals = n_steps // max(1, round(n_steps / AUTO_EVALUATIONS)) + epochs
    full = n_tokens * epochs if n_examples > sample else 0
    return int(evals * sample * n_tokens / n_examples + full)


def _file_estimate(file: InputFile, tokens: FileTokens) -> FileEstimate:
    return FileEstimate(
        id=file.id,
        n_examples=file.report.n_examples,
        n_trained_examples=tokens.n_trained_examples,
        n_tokens=tokens.n_tokens,
        n_truncated=tokens.n_truncated,
        truncated_lines=tokens.truncated_lines,
    )


def _count(
    path: Path, tok: TemplateTokenizer, method: str, max_len: int, param: str, progress: Callable[[], None] | None
) -> FileTokens:
    try:
        return count_trained_tokens(path, tok, method, max_len, progress=progress)
    except TrainingDataError as exc:
        raise InvalidRequest(str(exc), param=param, code="invalid_training_file") from exc


def _memory_verdict(
    settings: Settings, memory: mem.MemoryEstimate, device: str, base: BaseModel, options: dict[str, Any]
) -> tuple[int, bool, str | None]:
    configured = settings.training_memory_limit_mb
    limit = int(configured * mem.MiB) if configured is not None else mem.device_memory_bytes(device)
    if memory.peak_bytes <= limit:
        return limit, True, None
    gib = 1024**3
    where = "OPENFT_TRAINING_MEMORY_LIMIT_MB" if configured is not None else f"this server's {device} memory"
    advice = "use LoRA (training_type 'lora')" if options["training_type"] == "full" else "use a lower lora_rank"
    reason = (
        f"{'Full' if options['training_type'] == 'full' else 'LoRA'} fine-tuning of {base.id} "
        f"needs about {memory.peak_bytes / gib:.1f} GiB (weights {memory.weights_bytes / gib:.1f}, gradients and "
        f"optimizer state {memory.trainable_state_bytes / gib:.1f}, activations of the largest step "
        f"{memory.activation_bytes / gib:.1f}, runtime {memory.runtime_bytes / gib:.1f}), more than the "
        f"{limit / gib:.1f} GiB allowed by {where}; {advice}, a smaller batch_size or shorter examples."
    )
    return limit, False, reason


def _peak_memory(
    settings: Settings, base: BaseModel, kind: str, options: dict[str, Any], lengths: list[int], batch: int, device: str
) -> mem.MemoryEstimate:
    try:
        shape = mem.model_shape(base, settings.models_dir)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="model") from exc
    return mem.estimate_memory(
        shape,
        device=device,
        base_id=base.id,
        training_type=options["training_type"],
        lora_rank=options["lora_rank"],
        target_modules=options["lora_target_modules"],
        # A DPO step packs both sides of each pair (their lengths are already summed per pair).
        step_tokens=mem.largest_step_tokens(lengths, batch),
    )


def estimate_files(
    settings: Settings,
    base: BaseModel,
    method: dict[str, Any],
    training: InputFile,
    validation: InputFile | None,
    *,
    calibrate_from: list[str] | None = None,
    progress: Callable[[], None] | None = None,
) -> FineTuningJobEstimate:
    """The estimate of a job of ``base`` and ``method`` (as requested) on files that passed validation.

    Args:
        settings: This server's settings (models directory, memory limit, calibration bound).
        base: The base model.
        method: The job's ``method`` object, hyperparameters as requested (``"auto"`` allowed).
        training: The training file.
        validation: The validation file, if any.
        calibrate_from: Lines to calibrate throughput on when none is measured; None never calibrates.
        progress: Called before each line is tokenized; whatever it raises stops the estimate.

    Raises:
        InvalidRequest: A line cannot be tokenized, or the model's tokenizer cannot be read.
    """
    kind = method["type"]
    requested = (method.get(kind) or {}).get("hyperparameters") or {}
    resolved = hyperparameters.resolve_method(kind, requested, training.report.n_examples)
    try:
        tok = TemplateTokenizer(tokenizer_directory(base, settings.models_dir))
    except Exception as exc:  # a registered directory without tokenizer files, a failed extraction
        raise InvalidRequest(f"Cannot read the tokenizer of {base.id}: {exc}", param="model") from exc
    max_len = _max_seq_len(base, kind, resolved)
    train = _count(training.path, tok, kind, max_len, "training_file", progress)
    valid = _count(validation.path, tok, kind, max_len, "validation_file", progress) if validation else None
    epochs, batch = int(resolved["n_epochs"]), int(resolved["batch_size"])
    n_steps = epochs * math.ceil(train.n_trained_examples / batch)
    trained = _trained_tokens(kind, resolved, train)
    options = options_of(method)
    device = mem.training_device()
    memory = _peak_memory(settings, base, kind, options, train.lengths, batch, device)
    limit, fits, reason = _memory_verdict(settings, memory, device, base, options)
    key = throughput_key(settings, base.id, kind, options["training_type"], device)
    rate = throughput.read(throughput_cache_dir(settings), key)
    if rate is None and calibrate_from and fits and kind != "reinforcement":
        spec = _calibration_spec(settings, base, kind, options, resolved, max_len)
        rate = throughput.measured_or_calibrated(
            throughput_cache_dir(settings),
            key,
            spec,
            calibrate_from,
            limit_seconds=settings.estimate_calibration_seconds,
        )
    scored = eval_tokens(n_steps, epochs, valid.n_trained_examples, valid.n_tokens) if valid else 0
    seconds = rate.seconds_for(trained, scored) if rate is not None else None
    method_obj = {**method, kind: {**(method.get(kind) or {}), "hyperparameters": resolved}}
    return FineTuningJobEstimate.model_validate(
        {
            "model": base.id,
            "training_file": _file_estimate(training, train),
            "validation_file": _file_estimate(validation, valid) if validation and valid else None,
            "hyperparameters": {k: resolved[k] for k in hyperparameters.COMMON},
            "method": method_obj,
            "training_type": options["training_type"],
            "n_steps": n_steps,
            "trained_tokens": trained,
            # Early stopping (method.<type>.openft.early_stopping) may end the run before its last step.
            "trained_tokens_exact": kind != "reinforcement" and not options.get("early_stopping"),
            "device": device,
            "peak_memory_bytes": memory.peak_bytes,
            "memory_limit_bytes": limit,
            "fits": fits,
            "reason": reason,
            "estimated_seconds": round(seconds, 1) if seconds is not None else None,
            "estimated_seconds_source": rate.source if rate is not None else "unavailable",
            "tokens_per_second": round(rate.tokens_per_second, 1) if rate is not None else None,
        }
    )


def _calibration_spec(
    settings: Settings, base: BaseModel, method: str, options: dict[str, Any], resolved: dict[str, Any], max_len: int
) -> dict[str, Any]:
    """The training spec fields of a calibration run: the job's model, method, options and batch size."""
    scale = FULL_FINE_TUNING_LR_SCALE if options["training_type"] == "full" else 1.0
    spec = {
        "method": method,
        "base_model": base.path if base.source == "local" and base.path else base.id,
        "models_dir": str(settings.models_dir),
        "cache_dir": str(settings.home / "cache" / "tokenized"),
        "batch_size": int(resolved["batch_size"]),
        "learning_rate_multiplier": float(resolved["learning_rate_multiplier"]),
        "learning_rate": base.lora_learning_rate * float(resolved["learning_rate_multiplier"]) * scale,
        "seed": 0,
        "max_seq_len": max_len,
        "threads": settings.training_threads,
        **{k: v for k, v in options.items() if k != "early_stopping"},
    }
    if method == "dpo":
        spec["beta"] = float(resolved.get("beta") or hyperparameters.DEFAULT_DPO_BETA)
    return spec


def _first_lines(path: Path, n: int) -> list[str]:
    lines: list[str] = []
    with path.open(encoding="utf-8-sig") as f:
        for raw in f:
            if raw.strip():
                lines.append(raw)
                if len(lines) >= n:
                    break
    return lines


class JobEstimator:
    """Estimates jobs for the API: the create checks and file validation a job gets, then :func:`estimate_files`."""

    def __init__(self, settings: Settings, files: FileService, jobs: JobService):
        self.settings = settings
        self.files = files
        self.jobs = jobs

    def estimate(self, principal: Principal, params: JobCreateParams) -> FineTuningJobEstimate:
        """Estimate the job ``params`` would create, creating nothing.

        Raises:
            ModelNotFound: the model is not in the catalog, nor a fine-tuned model or checkpoint the caller
                may use.
            InvalidRequest: what creating the job would refuse, or what its validation would fail on
                (the message names the file's line).
        """
        _, base, method = self.jobs.checked_request(principal, params)  # nothing is created
        training = self._validated(principal, params.training_file, method["type"], "training")
        validation = None
        if params.validation_file:
            validation = self._validated(principal, params.validation_file, method["type"], "validation")
        sample = _first_lines(training.path, CALIBRATION_SAMPLE_LINES)
        return estimate_files(self.settings, base, method, training, validation, calibrate_from=sample)

    def _validated(self, principal: Principal, file_id: str, method: str, purpose: str) -> InputFile:
        path = self.files.local_path(self.files.get(principal, file_id))
        report = validate_file(path, method, purpose=purpose, max_examples=self.settings.max_examples_per_file)
        problem = first_error_message(report, file_kind=purpose)
        if problem is not None:
            raise InvalidRequest(problem.message, param=f"{purpose}_file", code=problem.code)
        return InputFile(file_id, path, report)
