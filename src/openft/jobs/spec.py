"""resolve_spec: turn a queued job into the TrainingSpec its training process reads."""

from __future__ import annotations

import logging
from pathlib import Path

from openft.errors import ModelNotFound
from openft.models.catalog import find_base_model
from openft.settings import Settings
from openft.store.rows import JobRow
from openft.training.spec import TrainingSpec

log = logging.getLogger(__name__)

# Longer examples are truncated (and reported): bounds memory on small machines.
MAX_SEQ_LEN_CAP = 4096


def resolve_spec(
    job: JobRow,
    settings: Settings,
    *,
    training_path: Path,
    validation_path: Path | None,
    output_dir: Path,
    registered_models: dict[str, str],
) -> TrainingSpec:
    """The spec for ``job``, whose hyperparameters were resolved when its files were validated.

    Raises:
        ModelNotFound: the base model disappeared from the catalog since the job was created.
    """
    base = find_base_model(job.model, registered_models)
    if base is None:
        raise ModelNotFound(f"The model `{job.model}` does not exist or you do not have access to it.")
    hyper = job.hyperparameters
    multiplier = float(hyper["learning_rate_multiplier"])
    spec = TrainingSpec(
        job_id=job.id,
        method=job.method["type"],
        # A registered local model is known only to the database, so the process gets its directory.
        base_model=base.path if base.source == "local" and base.path else base.id,
        models_dir=str(settings.models_dir),
        training_file=str(training_path),
        validation_file=str(validation_path) if validation_path else None,
        output_dir=str(output_dir),
        n_epochs=int(hyper["n_epochs"]),
        batch_size=int(hyper["batch_size"]),
        learning_rate_multiplier=multiplier,
        learning_rate=base.lora_learning_rate * multiplier,
        seed=job.seed,
        max_seq_len=min(base.context_length, MAX_SEQ_LEN_CAP),
        threads=settings.training_threads,
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
