"""Precision: ``dtype=auto`` picks bf16 only where it is fast, and bf16 training tracks fp32 training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openft.data.chat_data import load_chat_examples
from openft.models.catalog import SMOLLM2, TINY_CHAT, find_base_model
from openft.models.loader import load_model_and_tokenizer
from openft.training.common import cpu_has_fast_bf16, resolve_dtype
from openft.training.mixed_precision import keep_adapter_inputs_in_base_dtype
from openft.training.packed_attention import use_packed_attention
from openft.training.packing import pack
from openft.training.supervised_loss import batch_loss

ASSETS = Path(__file__).resolve().parents[2] / "assets"
STEPS = 12


def test_auto_dtype_is_bf16_exactly_where_the_hardware_runs_it_fast() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", TINY_CHAT, cpu) == torch.float32  # kept exact for the tests
    expected = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    assert resolve_dtype("auto", SMOLLM2, cpu) == expected
    assert resolve_dtype("float32", SMOLLM2, cpu) == torch.float32
    assert resolve_dtype("bfloat16", TINY_CHAT, cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="unsupported dtype"):
        resolve_dtype("float16", SMOLLM2, cpu)


def loss_curve(dtype: torch.dtype, models_dir: Path) -> list[float]:
    """Losses of ``STEPS`` LoRA steps on tiny-chat, set up as the supervised recipe sets it up."""
    from peft import LoraConfig, get_peft_model

    base = find_base_model(TINY_CHAT)
    assert base is not None
    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(base, models_dir, dtype=dtype)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert use_packed_attention(model)
    keep_adapter_inputs_in_base_dtype(model)  # bf16: bf16 compute under autocast, fp32 adapter weights
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in trainable)  # adapters stay fp32 over a bf16 base
    examples, _ = load_chat_examples(ASSETS / "tiny_train.jsonl", tokenizer, 1024)
    optimizer = torch.optim.AdamW(trainable, lr=5e-3)
    losses = []
    for step in range(STEPS):
        batch = pack(examples[(step * 4) % len(examples) :][:4])
        loss, _, _ = batch_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_bf16_loss_curve_stays_within_tolerance_of_fp32(tmp_path: Path) -> None:
    fp32 = loss_curve(torch.float32, tmp_path)
    bf16 = loss_curve(torch.bfloat16, tmp_path)
    assert fp32[-1] < fp32[0]  # it learns, so the comparison covers a moving curve
    assert bf16[-1] < bf16[0]
    for full, half in zip(fp32, bf16, strict=True):
        assert half == pytest.approx(full, rel=0.02), (fp32, bf16)
