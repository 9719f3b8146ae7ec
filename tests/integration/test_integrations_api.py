"""The ``integrations`` of a job: OpenAI's ``wandb`` and openft's ``mlflow`` accepted and returned as
given; a malformed one is a 400 naming the problem."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


def _train(client: OpenAI) -> str:
    return client.files.create(file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune").id


def test_wandb_and_mlflow_integrations_round_trip(client: OpenAI) -> None:
    integrations = [
        {"type": "wandb", "wandb": {"project": "p", "entity": "team", "name": "run", "tags": ["a"]}},
        {"type": "mlflow", "mlflow": {"tracking_uri": "file:///tmp/mlruns", "experiment_name": "e", "run_name": "r"}},
    ]
    job = client.fine_tuning.jobs.create(
        model="openft/tiny-chat",
        training_file=_train(client),
        integrations=integrations,  # type: ignore[arg-type]
    )
    raw = client.get(f"/fine_tuning/jobs/{job.id}", cast_to=object)
    assert raw["integrations"] == integrations


def test_integration_without_its_settings_is_a_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(
            model="openft/tiny-chat",
            training_file=_train(client),
            integrations=[{"type": "mlflow", "wandb": {"project": "p"}}],  # type: ignore[list-item]
        )
    assert "needs an 'mlflow' object" in info.value.message
