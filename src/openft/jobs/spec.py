"""resolve_spec: turn a queued job into the TrainingSpec its training process reads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from openft.errors import ModelNotFound
from openft.graders.service import private_dirs
from openft.jobs import lineage
from openft.models.catalog import find_base_model
from openft.serving.backend import ServedModel
from openft.settings import Settings
from openft.store import Store
from openft.store.rows import JobRow
from openft.training.spec import TrainingSpec

log = logging.getLogger(__name__)

# Longer examples are truncated (and reported): bounds memory on small machines.
MAX_SEQ_LEN_CAP = 4096
FULL_FINE_TUNING_LR_SCALE = 0.1
"""Full fine-tuning's peak rate relative to the base model's LoRA rate: every weight moves, so smaller steps."""


def training_options(job: JobRow) -> dict[str, Any]:
    """The spec fields from ``method.<type>.openft`` (LoRA or full, LoRA shape) and DPO's ``beta``.

    Absent options keep the spec's defaults (LoRA r=16, alpha=32, dropout 0, every linear layer).
    """
    section = job.method.get(job.method["type"]) or {}
    options = section.get("openft") or {}
    out: dict[str, Any] = {"training_type": options.get("training_type") or "lora"}
    for wire, field in (
        ("lora_rank", "lora_rank"),
        ("lora_alpha", "lora_alpha"),
        ("lora_dropout", "lora_dropout"),
        ("target_modules", "lora_target_modules"),
    ):
        if options.get(wire) is not None:
            out[field] = options[wire]
    early_stopping = options.get("early_stopping")
    if early_stopping:
        out["early_stopping_eval_every_steps"] = early_stopping["eval_every_steps"]
        out["early_stopping_patience"] = early_stopping["patience"]
        out["early_stopping_min_delta"] = early_stopping.get("min_delta", 0.0)
    beta = (section.get("hyperparameters") or {}).get("beta")
    if isinstance(beta, int | float):
        out["beta"] = float(beta)
    return out


def reinforcement_options(job: JobRow, settings: Settings) -> dict[str, Any]:
    """The spec fields of a reinforcement job: its grader, RFT hyperparameters and the directories its
    python grader must not see; nothing for other methods."""
    if job.method["type"] != "reinforcement":
        return {}
    section = job.method.get("reinforcement") or {}
    hyper = section.get("hyperparameters") or {}
    out: dict[str, Any] = {
        "grader": section.get("grader"),
        "private_dirs": private_dirs(settings),
        "python_grader_timeout_seconds": settings.python_grader_timeout_seconds,
        "allow_unconfined_python_graders": settings.allow_unconfined_python_graders,
    }
    for name in ("eval_interval", "eval_samples", "compute_multiplier", "reasoning_effort"):
        if hyper.get(name) not in (None, "auto"):
            out[name] = hyper[name]
    return out


def resolve_spec(
    job: JobRow,
    settings: Settings,
    *,
    training_path: Path,
    validation_path: Path | None,
    output_dir: Path,
    registered_models: dict[str, str],
    store: Store | None = None,
) -> TrainingSpec:
    """The spec for ``job``, whose hyperparameters were resolved when its files were validated.

    ``store`` finds the weights of a job that starts from a fine-tuned model (``jobs/lineage.py``).

    Raises:
        ModelNotFound: the base model disappeared from the catalog since the job was created, or the
            weights of the fine-tuned model it starts from are gone.
    """
    if job.parent_job_id is not None and store is not None:
        start = lineage.training_start(store, settings, job)
    else:
        found = find_base_model(job.model, registered_models)
        start = ServedModel(id=job.model, base=found) if found is not None and job.parent_job_id is None else None
    if start is None:
        raise ModelNotFound(f"The model `{job.model}` does not exist or you do not have access to it.")
    base = start.base
    hyper = job.hyperparameters
    multiplier = float(hyper["learning_rate_multiplier"])
    options = training_options(job)
    options.update(lineage.continued_lora_options(start, options["training_type"]))
    lr_scale = FULL_FINE_TUNING_LR_SCALE if options["training_type"] == "full" else 1.0
    spec = TrainingSpec(
        job_id=job.id,
        method=job.method["type"],
        # A registered local model is known only to the database, so the process gets its directory.
        base_model=base.path if base.source == "local" and base.path else base.id,
        models_dir=str(settings.models_dir),
        cache_dir=str(settings.home / "cache" / "tokenized"),
        training_file=str(training_path),
        validation_file=str(validation_path) if validation_path else None,
        output_dir=str(output_dir),
        n_epochs=int(hyper["n_epochs"]),
        batch_size=int(hyper["batch_size"]),
        learning_rate_multiplier=multiplier,
        learning_rate=base.lora_learning_rate * multiplier * lr_scale,
        seed=job.seed,
        max_seq_len=min(base.context_length, MAX_SEQ_LEN_CAP),
        threads=settings.training_threads,
        integrations=list(job.integrations or []),
        **options,
        **reinforcement_options(job, settings),
    )
    log.info(
        "job %s: lr=%g (base %g x %g), epochs=%d, batch=%d",
        job.id,
        spec.learning_rate,
        base.lora_learning_rate,
        multiplier,
        spec.n_epochs,
        spec.batch_size,
    )
    return spec
