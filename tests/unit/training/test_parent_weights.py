"""A run that starts from a LoRA parent (``spec.init_adapter``, training/model_setup.py) starts from exactly
the parent's weights as served: a continued adapter and a full fine-tune of the merged parent give the
parent's logits before the first step, train, and a continued adapter's DPO reference is the parent."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import load_model_and_tokenizer
from openft.training.events import EventWriter
from openft.training.model_setup import load_trainable_model
from openft.training.spec import TrainingSpec

BASE = find_base_model(TINY_CHAT)
assert BASE is not None


@pytest.fixture(scope="module")
def parent(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A LoRA adapter (rank 4 on q_proj and v_proj) with non-zero weights, and the tiny-chat it rests on."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    model, _ = load_model_and_tokenizer(BASE, models_dir)
    with warnings.catch_warnings():  # PEFT calls a transformers method deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, weight in peft.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.5)  # a fresh adapter is a no-op (B = 0); a trained one is not
    directory = tmp_path_factory.mktemp("parent") / "adapter"
    peft.save_pretrained(directory)
    return directory, peft.eval()


def _spec(models_dir: Path, output: Path, adapter: Path, training_type: str) -> TrainingSpec:
    spec = TrainingSpec(
        job_id="ftjob-child",
        method="supervised",
        base_model=TINY_CHAT,
        models_dir=str(models_dir),
        training_file="unused.jsonl",
        validation_file=None,
        output_dir=str(output),
        n_epochs=1,
        batch_size=1,
        learning_rate_multiplier=1.0,
        learning_rate=1e-2,
        seed=1,
        training_type=training_type,
        init_adapter=str(adapter),
    )
    # A LoRA child takes its parent's shape (jobs/lineage.py fills these from adapter_config.json).
    return dataclasses.replace(spec, lora_rank=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])


def _logits(model: Any) -> torch.Tensor:
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("training_type", ["lora", "full"])
def test_a_child_starts_from_its_parents_weights_and_trains(
    training_type: str, parent: tuple[Path, Any], models_dir: Path, tmp_path: Path
) -> None:
    adapter, served = parent
    spec = _spec(models_dir, tmp_path, adapter, training_type)
    child = load_trainable_model(spec, BASE, EventWriter(tmp_path), dtype=torch.float32)
    child.model.eval()
    expected = _logits(served)
    with served.disable_adapter():
        assert not torch.allclose(expected, _logits(served), atol=1e-3)  # the parent is not its base
    torch.testing.assert_close(_logits(child.model), expected, atol=1e-5, rtol=1e-5)

    if training_type == "lora":
        assert child.continued and len(child.trainable) == 4 * 2 * 2  # layers x (q, v) x (A, B)
        with child.reference() as reference:  # DPO's reference: the parent, not the base under it
            torch.testing.assert_close(_logits(reference), expected, atol=1e-5, rtol=1e-5)
    else:
        n_weights = sum(p.numel() for p in child.model.parameters())
        assert not child.continued and sum(p.numel() for p in child.trainable) == n_weights
    child.model.train()
    loss = child.model(input_ids=torch.arange(3, 40).unsqueeze(0), labels=torch.arange(3, 40).unsqueeze(0)).loss
    loss.backward()
    torch.optim.SGD(child.trainable, lr=0.5).step()
    child.model.eval()
    assert not torch.allclose(_logits(child.model), expected, atol=1e-4)  # its weights train
