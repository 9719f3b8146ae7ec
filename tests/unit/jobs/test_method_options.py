"""Per-method hyperparameters (DPO's beta) and openft's training options (LoRA or full fine-tuning),
from the request to the training spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from openft.jobs.hyperparameters import COMMON, resolve_method
from openft.jobs.service import _requested_method
from openft.jobs.spec import FULL_FINE_TUNING_LR_SCALE, resolve_spec, training_options
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.settings import Settings
from openft.store.rows import JobRow
from openft.types.fine_tuning.fine_tuning_job import FineTuningJob, JobCreateParams


def job_with(method: dict[str, Any]) -> JobRow:
    hyper = method[method["type"]]["hyperparameters"]
    return JobRow(
        id="ftjob-1",
        organization_id="org-1",
        model=TINY_CHAT,
        training_file="file-1",
        validation_file=None,
        status="queued",
        method=method,
        hyperparameters={k: hyper[k] for k in COMMON},
        seed=3,
        model_name="ft:x",
        created_at=0,
    )


def test_dpo_beta_resolves_to_a_tenth_under_auto_and_keeps_a_given_value() -> None:
    auto = resolve_method("dpo", {"beta": "auto", "n_epochs": "auto", "batch_size": 2}, n_examples=20)
    assert auto == {"n_epochs": 5, "batch_size": 2, "learning_rate_multiplier": 1.0, "beta": 0.1}
    assert resolve_method("dpo", {"beta": 0.5}, n_examples=20)["beta"] == 0.5
    assert "beta" not in resolve_method("supervised", {}, n_examples=20)


def test_request_keeps_beta_in_the_method_and_options_beside_the_hyperparameters() -> None:
    params = JobCreateParams.model_validate(
        {
            "model": TINY_CHAT,
            "training_file": "file-1",
            "method": {
                "type": "dpo",
                "dpo": {"hyperparameters": {"beta": 0.3}, "openft": {"lora_rank": 4, "target_modules": ["q_proj"]}},
            },
        }
    )
    method = _requested_method(params)
    assert method["dpo"]["hyperparameters"] == {
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
        "n_epochs": "auto",
        "beta": 0.3,
    }
    assert method["dpo"]["openft"] == {"training_type": "lora", "lora_rank": 4, "target_modules": ["q_proj"]}


@pytest.mark.parametrize(
    "openft",
    [
        {"training_type": "full", "lora_rank": 8},
        {"training_type": "qlora"},
        {"lora_rank": 0},
        {"lora_dropout": 1.0},
        {"target_modules": []},
        {"unknown": 1},
    ],
)
def test_bad_training_options_are_refused(openft: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JobCreateParams.model_validate(
            {
                "model": TINY_CHAT,
                "training_file": "file-1",
                "method": {"type": "supervised", "supervised": {"openft": openft}},
            }
        )


@pytest.mark.parametrize("beta", [0, -1, 2.5])
def test_beta_out_of_range_is_refused(beta: float) -> None:
    with pytest.raises(ValidationError):
        JobCreateParams.model_validate(
            {
                "model": TINY_CHAT,
                "training_file": "file-1",
                "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": beta}}},
            }
        )


def test_the_spec_gets_the_options_and_a_smaller_rate_for_full_fine_tuning(tmp_path: Path) -> None:
    hyper = {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 2.0}
    settings = Settings(home=tmp_path)
    paths: dict[str, Any] = {
        "training_path": tmp_path / "t.jsonl",
        "validation_path": None,
        "output_dir": tmp_path / "out",
        "registered_models": {},
    }
    lora = job_with(
        {
            "type": "dpo",
            "dpo": {"hyperparameters": {**hyper, "beta": 0.25}, "openft": {"lora_alpha": 8, "lora_dropout": 0.1}},
        }
    )
    spec = resolve_spec(lora, settings, **paths)
    base = find_base_model(TINY_CHAT)
    assert base is not None
    assert (spec.method, spec.training_type, spec.beta, spec.lora_alpha, spec.lora_dropout) == (
        "dpo",
        "lora",
        0.25,
        8,
        0.1,
    )
    assert spec.lora_rank == 16 and spec.lora_target_modules is None
    assert spec.learning_rate == pytest.approx(base.lora_learning_rate * 2.0)

    full = job_with(
        {"type": "supervised", "supervised": {"hyperparameters": hyper, "openft": {"training_type": "full"}}}
    )
    spec = resolve_spec(full, settings, **paths)
    assert spec.training_type == "full"
    assert spec.learning_rate == pytest.approx(base.lora_learning_rate * 2.0 * FULL_FINE_TUNING_LR_SCALE)
    assert training_options(job_with({"type": "supervised", "supervised": {"hyperparameters": hyper}})) == {
        "training_type": "lora"
    }


def test_the_job_object_shows_the_common_three_and_the_method_shows_beta_and_options() -> None:
    method = {
        "type": "dpo",
        "dpo": {
            "hyperparameters": {"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.0, "beta": 0.1},
            "openft": {"training_type": "full"},
        },
    }
    row = job_with(method)
    wire = FineTuningJob(
        id=row.id,
        created_at=0,
        error=None,
        fine_tuned_model=None,
        finished_at=None,
        hyperparameters=row.hyperparameters,
        model=row.model,
        organization_id=row.organization_id,
        result_files=[],
        seed=row.seed,
        status="queued",
        trained_tokens=None,
        training_file=row.training_file,
        validation_file=None,
        method=method,
    ).model_dump()
    assert wire["method"]["dpo"]["hyperparameters"]["beta"] == 0.1
    assert wire["method"]["dpo"]["openft"]["training_type"] == "full"
    assert set(wire["hyperparameters"]) == set(COMMON)
