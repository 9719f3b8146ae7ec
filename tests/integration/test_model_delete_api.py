"""DELETE /v1/models/{id} frees the fine-tuned model's adapters in the serving backend (official client,
real store, real backend). The succeeded job is written to the store with a saved PEFT adapter, as the
worker leaves it, so that no training run is needed here."""

from __future__ import annotations

import time
import warnings

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.settings import Settings
from openft.store.rows import CheckpointRow, JobRow

pytestmark = pytest.mark.integration
HI = [{"role": "user", "content": "Say hi."}]


def _save_adapter(settings: Settings, path: str) -> None:
    from peft import LoraConfig, get_peft_model

    from openft.models.loader import load_model_and_tokenizer

    base = find_base_model(TINY_CHAT)
    assert base is not None
    model, _ = load_model_and_tokenizer(base, settings.models_dir)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        get_peft_model(model, config).save_pretrained(settings.home / path)


def _succeeded_job(app: FastAPI, settings: Settings, suffix: str) -> tuple[str, str]:
    """A succeeded job with one checkpoint; (fine-tuned model, checkpoint model)."""
    job_id = f"ftjob-delete{suffix}"
    name = f"ft:{TINY_CHAT}:personal:{suffix}:abcd{suffix}"
    now = int(time.time())
    store = app.state.store
    store.insert_job(
        JobRow(
            id=job_id,
            organization_id=settings.organization_id,
            model=TINY_CHAT,
            training_file="file-x",
            validation_file=None,
            status="succeeded",
            method={"type": "supervised"},
            hyperparameters={},
            seed=1,
            model_name=name,
            created_at=now,
            fine_tuned_model=name,
            finished_at=now,
        )
    )
    _save_adapter(settings, f"jobs/{job_id}/adapter")
    _save_adapter(settings, f"jobs/{job_id}/checkpoints/step-2")
    checkpoint = f"{name}:ckpt-step-2"
    store.add_checkpoint(
        CheckpointRow(
            id=f"ftckpt_{suffix}",
            job_id=job_id,
            organization_id=settings.organization_id,
            created_at=now,
            step_number=2,
            fine_tuned_model_checkpoint=checkpoint,
            metrics={"step": 2},
            adapter_path=f"jobs/{job_id}/checkpoints/step-2",
        )
    )
    return name, checkpoint


def test_delete_unloads_the_model_and_its_checkpoints(client: OpenAI, app: FastAPI, settings: Settings) -> None:
    model, checkpoint = _succeeded_job(app, settings, "1111")
    other, _ = _succeeded_job(app, settings, "2222")
    for served in (model, checkpoint, other, TINY_CHAT):
        reply = client.chat.completions.create(model=served, messages=HI, max_tokens=3, temperature=0)
        assert reply.model == served
    backend = app.state.backend_if_loaded()
    assert backend.loaded() == {TINY_CHAT: sorted([model, checkpoint, other])}
    before = backend.adapter_bytes()[TINY_CHAT]

    with pytest.raises(openai.BadRequestError):
        client.models.delete(TINY_CHAT)
    with pytest.raises(openai.BadRequestError):
        client.models.delete(checkpoint)
    deleted = client.models.delete(model)

    assert deleted.deleted and deleted.id == model
    assert backend.loaded() == {TINY_CHAT: [other]}
    assert backend.adapter_bytes()[TINY_CHAT] == pytest.approx(before / 3)
    for gone in (model, checkpoint):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=gone, messages=HI, max_tokens=2)
    assert client.chat.completions.create(model=other, messages=HI, max_tokens=2).model == other
    assert backend.base_loads[TINY_CHAT] == 1
