"""Experiment tracking from the training process: every metrics line also goes to W&B and MLflow.

The job's ``integrations`` arrive in the spec. ``wandb``: a run in the given project (entity, name
— default the job id —, tags plus the job id and base model), offline (``WANDB_MODE=offline``,
synced later with ``wandb sync``) when no ``WANDB_API_KEY`` is set, written under the job's output
directory. ``mlflow`` (openft's own type): a run in ``experiment_name`` at ``tracking_uri``.
A tracker that fails is reported once as a warning event and then left out: tracking never fails
a job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from openft.training.spec import TrainingSpec

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self) -> None: ...


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _config(spec: TrainingSpec) -> dict[str, Any]:
    return {
        "job_id": spec.job_id,
        "base_model": spec.base_model,
        "method": spec.method,
        "n_epochs": spec.n_epochs,
        "batch_size": spec.batch_size,
        "learning_rate_multiplier": spec.learning_rate_multiplier,
        "learning_rate": spec.learning_rate,
        "seed": spec.seed,
        "lora_rank": spec.lora_rank,
        "lora_alpha": spec.lora_alpha,
    }


class WandbTracker:
    def __init__(self, spec: TrainingSpec, settings: dict[str, Any]):
        if not os.environ.get("WANDB_API_KEY"):
            os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        tags = [*(settings.get("tags") or []), spec.job_id, spec.base_model]
        self.run = wandb.init(
            project=settings["project"],
            entity=settings.get("entity"),
            name=settings.get("name") or spec.job_id,
            tags=list(dict.fromkeys(t[:64] for t in tags)),
            config=_config(spec),
            dir=spec.output_dir,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, spec: TrainingSpec, settings: dict[str, Any]):
        uri = settings.get("tracking_uri")
        if uri and (uri.startswith("file:") or "://" not in uri):
            # A local folder is the offline choice; MLflow 3 wants this opt-in for its file store.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        import mlflow

        self.mlflow = mlflow
        if uri:
            mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(settings.get("experiment_name") or "openft")
        self.run = mlflow.start_run(run_name=settings.get("run_name") or spec.job_id)
        mlflow.set_tags({"openft.job_id": spec.job_id, "openft.base_model": spec.base_model})
        mlflow.log_params(_config(spec))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def finish(self) -> None:
        self.mlflow.end_run()


_TRACKERS: dict[str, Callable[[TrainingSpec, dict[str, Any]], Tracker]] = {
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
}


class Tracking:
    """The job's trackers; ``warn`` reports a tracker's failure (as a job event)."""

    def __init__(self, spec: TrainingSpec, warn: Callable[[str], None]):
        self._warn = warn
        self._trackers: dict[str, Tracker] = {}
        for integration in spec.integrations:
            kind = integration.get("type", "")
            factory = _TRACKERS.get(kind)
            if factory is None:
                continue
            try:
                self._trackers[kind] = factory(spec, integration.get(kind) or {})
            except Exception as exc:
                self._fail(kind, "could not start", exc)

    def _fail(self, kind: str, what: str, exc: BaseException) -> None:
        log.exception("%s tracking %s", kind, what)
        self._trackers.pop(kind, None)
        self._warn(f"The {kind} integration {what} and was turned off: {type(exc).__name__}: {exc}")

    def log(self, metrics: dict[str, Any]) -> None:
        values = _numbers(metrics)
        step = int(metrics.get("step", 0))
        for kind, tracker in list(self._trackers.items()):
            try:
                tracker.log(values, step)
            except Exception as exc:
                self._fail(kind, "failed to log", exc)

    def finish(self) -> None:
        for kind, tracker in list(self._trackers.items()):
            try:
                tracker.finish()
            except Exception as exc:
                self._fail(kind, "failed to finish", exc)
        self._trackers.clear()
