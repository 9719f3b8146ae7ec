"""Tracking never fails a job: a tracker that cannot start is reported once and left out."""

from __future__ import annotations

import json
from pathlib import Path

from openft.training.events import EventWriter
from openft.training.protocol import EVENTS_FILE
from openft.training.spec import TrainingSpec
from openft.training.tracking import Tracking


def _spec(tmp_path: Path, integrations: list[dict[str, object]]) -> TrainingSpec:
    return TrainingSpec(
        job_id="ftjob-abc",
        method="supervised",
        base_model="openft/tiny-chat",
        models_dir=str(tmp_path),
        training_file=str(tmp_path / "t.jsonl"),
        validation_file=None,
        output_dir=str(tmp_path / "out"),
        n_epochs=1,
        batch_size=1,
        learning_rate_multiplier=1.0,
        learning_rate=0.01,
        seed=1,
        integrations=integrations,
    )


def test_a_tracker_that_cannot_start_is_a_warning(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"type": "mlflow", "mlflow": {"tracking_uri": "unknown-scheme://nowhere"}}])
    events = EventWriter(Path(spec.output_dir))
    events.tracking = Tracking(spec, lambda text: events.message(text, level="warn"))
    events.metrics(step=1, total_steps=1, train_loss=1.0)
    events.close()
    lines = [json.loads(line) for line in (Path(spec.output_dir) / EVENTS_FILE).read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["message", "metrics"]
    assert lines[0]["level"] == "warn" and lines[0]["message"].startswith("The mlflow integration could not start")


def test_spec_carries_integrations_through_json(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"type": "wandb", "wandb": {"project": "p"}}])
    assert TrainingSpec.from_dict(json.loads(spec.to_json())) == spec
