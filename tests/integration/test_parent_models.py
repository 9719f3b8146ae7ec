"""Jobs that start from a fine-tuned model or checkpoint, through the official client on SQLite and
PostgreSQL: who may use which parent, how the new model is named, what the job row records, and the
training spec the worker would write. Parents here are jobs whose model a worker recorded (an adapter
directory on disk) without training; ``tests/e2e/test_continue_from_model.py`` trains real chains."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.jobs.spec import resolve_spec
from openft.settings import Settings
from openft.store.keys import KeyStore
from openft.store.rows import CheckpointRow, JobRow

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"


def _client(http: TestClient, keys: KeyStore, organization: str) -> OpenAI:
    key = keys.create(organization, "default")[1]
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


def _training_file(client: OpenAI) -> str:
    return client.files.create(file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune").id


def _write_adapter(directory: Path, rank: int = 8) -> None:
    directory.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"]}
    (directory / "adapter_config.json").write_text(json.dumps(config))


def _fine_tuned(app: FastAPI, client: OpenAI, model: str = TINY, **create: Any) -> JobRow:
    """A job created from ``model`` whose LoRA model a worker recorded (rank 8 on q_proj and v_proj)."""
    created = client.fine_tuning.jobs.create(model=model, training_file=_training_file(client), **create)
    job: JobRow = app.state.store.get_job(created.id)
    _write_adapter(app.state.settings.jobs_dir / job.id / "adapter")
    app.state.store.update_job(job.id, fine_tuned_model=job.model_name)
    return app.state.store.get_job(job.id)


def _checkpoint(app: FastAPI, job: JobRow, step: int) -> str:
    name = f"{job.model_name}:ckpt-step-{step}"
    _write_adapter(app.state.settings.jobs_dir / job.id / "checkpoints" / f"step-{step}")
    app.state.store.add_checkpoint(
        CheckpointRow(
            id=f"ftckpt-{job.id[-8:]}{step}",
            job_id=job.id,
            organization_id=job.organization_id,
            created_at=int(time.time()),
            step_number=step,
            fine_tuned_model_checkpoint=name,
            metrics={"step": step},
            adapter_path=f"jobs/{job.id}/checkpoints/step-{step}",
        )
    )
    return name


def _assert_not_found(client: OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        client.fine_tuning.jobs.create(model=model, training_file=_training_file(client))
    assert refused.value.code == "model_not_found" and refused.value.param == "model"
    assert model[:40] in refused.value.message


def test_chains_are_named_after_the_root_base_model(app: FastAPI, client: OpenAI) -> None:
    parent = _fine_tuned(app, client, suffix="sft")
    child = client.fine_tuning.jobs.create(
        model=parent.model_name, training_file=_training_file(client), suffix="dpo", method={"type": "dpo"}
    )
    assert child.model == parent.model_name  # the parent as given
    row = app.state.store.get_job(child.id)
    assert row.parent_job_id == parent.id and row.base_model == TINY
    assert row.model_name.startswith(f"ft:{TINY}:personal:dpo:")

    # Three generations deep, from a checkpoint of the second: still the root's name, the checkpoint's job.
    app.state.store.update_job(child.id, fine_tuned_model=row.model_name)
    _write_adapter(app.state.settings.jobs_dir / child.id / "adapter")
    checkpoint = _checkpoint(app, row, 4)
    grandchild = client.fine_tuning.jobs.create(model=checkpoint, training_file=_training_file(client))
    grand_row = app.state.store.get_job(grandchild.id)
    assert grandchild.model == checkpoint
    assert (grand_row.parent_job_id, grand_row.base_model) == (child.id, TINY)
    assert grand_row.model_name.startswith(f"ft:{TINY}:personal::")

    # /v1/models names each model's parent and its root base model.
    listed = {m.id: m for m in client.models.list()}
    assert listed[row.model_name].parent == parent.model_name  # type: ignore[attr-defined]
    assert listed[row.model_name].root == TINY  # type: ignore[attr-defined]


def test_unknown_deleted_and_other_organizations_parents_are_404(app: FastAPI, http: TestClient) -> None:
    keys: KeyStore = app.state.keys
    acme, globex = _client(http, keys, "org-acme"), _client(http, keys, "org-globex")
    parent = _fine_tuned(app, acme)
    checkpoint = _checkpoint(app, parent, 3)
    _assert_not_found(acme, "ft:openft/tiny-chat:acme::nosuchid")
    _assert_not_found(acme, f"{parent.model_name}:ckpt-step-99")
    _assert_not_found(globex, parent.model_name)
    _assert_not_found(globex, checkpoint)

    # Shared with globex's project: globex may start from the checkpoint; its model is globex's own.
    acme.fine_tuning.checkpoints.permissions.create(checkpoint, project_ids=["org-globex/default"])
    shared = globex.fine_tuning.jobs.create(model=checkpoint, training_file=_training_file(globex))
    assert app.state.store.get_job(shared.id).model_name.startswith(f"ft:{TINY}:globex::")

    acme.models.delete(parent.model_name)  # its checkpoints go with it
    _assert_not_found(acme, parent.model_name)
    _assert_not_found(acme, checkpoint)
    _assert_not_found(globex, checkpoint)


def test_a_lora_child_keeps_its_lora_parents_shape(app: FastAPI, client: OpenAI) -> None:
    parent = _fine_tuned(app, client)
    for option, value in (("lora_rank", 16), ("lora_alpha", 8), ("target_modules", ["k_proj"])):
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(
                model=parent.model_name,
                training_file=_training_file(client),
                method={"type": "supervised", "supervised": {"openft": {option: value}}},  # type: ignore[typeddict-unknown-key]
            )
        assert refused.value.param == f"method.supervised.openft.{option}"
        assert "continues its LoRA parent's adapter" in refused.value.message
    same = {"lora_rank": 8, "target_modules": ["q_proj", "v_proj"]}
    for openft in (same, {"training_type": "full"}):
        client.fine_tuning.jobs.create(
            model=parent.model_name,
            training_file=_training_file(client),
            method={"type": "supervised", "supervised": {"openft": openft}},  # type: ignore[typeddict-unknown-key]
        )


def test_the_spec_of_a_child_starts_from_its_parents_adapter(app: FastAPI, client: OpenAI, tmp_path: Path) -> None:
    settings: Settings = app.state.settings
    parent = _fine_tuned(app, client)
    paths: dict[str, Any] = {
        "training_path": tmp_path / "train.jsonl",
        "validation_path": None,
        "output_dir": tmp_path / "out",
        "registered_models": {},
    }
    for openft, training_type in (({}, "lora"), ({"training_type": "full"}, "full")):
        created = client.fine_tuning.jobs.create(
            model=parent.model_name,
            training_file=_training_file(client),
            method={"type": "dpo", "dpo": {"openft": openft}},  # type: ignore[typeddict-unknown-key]
        )
        job = app.state.store.get_job(created.id)
        job.hyperparameters = {"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.0}
        spec = resolve_spec(job, settings, store=app.state.store, **paths)
        assert spec.base_model == TINY and spec.training_type == training_type
        assert spec.init_adapter == str(settings.jobs_dir / parent.id / "adapter")
        if training_type == "lora":
            assert (spec.lora_rank, spec.lora_alpha, spec.lora_target_modules) == (8, 16, ["q_proj", "v_proj"])

    # The parent deleted after the child was created: the child still finds the weights it starts from.
    client.models.delete(parent.model_name)
    spec = resolve_spec(job, settings, store=app.state.store, **paths)
    assert spec.init_adapter == str(settings.jobs_dir / parent.id / "adapter")
