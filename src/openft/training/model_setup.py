"""Load the model a recipe trains: LoRA adapters over a frozen base, or every weight (full fine-tuning).

``spec.training_type`` picks one per job (``method.<type>.openft.training_type`` on the wire).
With LoRA only the adapters train, so the base weights may stay in bf16 and the frozen base is
the DPO reference (``model.disable_adapter()``), with no second copy in memory. Full fine-tuning
trains every weight in fp32 (bf16 weights would round away AdamW's small updates) and saves a whole
model: ``config.json`` and safetensors, no ``adapter_config.json``, which is how serving tells the
two apart.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openft.models.catalog import BaseModel
from openft.models.loader import load_model_and_tokenizer
from openft.training.events import EventWriter
from openft.training.spec import TrainingSpec

LORA = "lora"
FULL = "full"
TRAINING_TYPES = (LORA, FULL)


@dataclass
class TrainableModel:
    """The model a recipe trains, with what it needs around it."""

    model: Any
    """A ``PeftModel`` (LoRA) or a ``PreTrainedModel`` (full)."""
    tokenizer: Any
    trainable: list[torch.nn.Parameter]
    device: torch.device
    dtype: torch.dtype
    training_type: str
    continued: bool = False
    """The adapter started as a parent model's adapter (``spec.init_adapter``), not at zero."""

    @property
    def is_lora(self) -> bool:
        return self.training_type == LORA

    @contextmanager
    def reference(self) -> Iterator[Any]:
        """The model as it was before training, for a DPO reference pass (no gradients).

        With a fresh LoRA adapter that is the base with the adapter disabled. A continued adapter (the
        parent model) and full fine-tuning have no such view, so callers compute reference values
        before the first step (see ``recipes/dpo.py``), when the model is still the parent.
        """
        frozen_base = self.is_lora and not self.continued
        with torch.no_grad(), self.model.disable_adapter() if frozen_base else nullcontext():
            yield self.model


def load_trainable_model(
    spec: TrainingSpec, base: BaseModel, events: EventWriter, *, dtype: torch.dtype
) -> TrainableModel:
    """Load ``base`` and make it trainable as ``spec.training_type`` says.

    Args:
        spec: The job's spec (training type, LoRA rank/alpha/dropout/target modules).
        base: The resolved base model.
        events: Where the "Loaded model" message goes.
        dtype: The dtype of frozen base weights under LoRA; full fine-tuning always trains in fp32.

    Raises:
        ValueError: Unknown training type, or LoRA target modules that match nothing in the model.
    """
    if spec.training_type not in TRAINING_TYPES:
        raise ValueError(f"unknown training_type {spec.training_type!r}; expected lora or full")
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.training_type == FULL:
        dtype = torch.float32
    model: Any  # a PreTrainedModel, then a PeftModel around it under LoRA
    model, tokenizer = load_model_and_tokenizer(base, Path(spec.models_dir), dtype=dtype)
    model.config.use_cache = False  # packing needs it (see recipes/supervised.py)
    continued = spec.init_adapter is not None and spec.training_type == LORA
    if continued:
        model = _continue_adapter(model, str(spec.init_adapter))
        what = f"LoRA r={spec.lora_rank}, alpha={spec.lora_alpha}, continuing the parent model's adapter"
    elif spec.training_type == LORA:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=spec.lora_rank,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            target_modules=list(spec.lora_target_modules) if spec.lora_target_modules else "all-linear",
            task_type="CAUSAL_LM",
        )
        with _peft_on_transformers_5():
            model = get_peft_model(model, lora)
        what = f"LoRA r={spec.lora_rank}, alpha={spec.lora_alpha}"
    else:
        if spec.init_adapter is not None:
            model = _merge_adapter(model, spec.init_adapter)
        what = "full fine-tuning" + (" of the parent model merged into its base" if spec.init_adapter else "")
    model = model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    dtype_name = str(dtype).removeprefix("torch.")
    events.message(
        f"Loaded model {base.id} in {time.perf_counter() - started:.1f}s ({dtype_name} on {device.type}); "
        f"{n_trainable:,} trainable parameters ({what})",
        data={
            "trainable_parameters": n_trainable,
            "dtype": dtype_name,
            "device": device.type,
            "training_type": spec.training_type,
        },
    )
    return TrainableModel(model, tokenizer, trainable, device, dtype, spec.training_type, continued)


@contextmanager
def _peft_on_transformers_5() -> Iterator[None]:
    """PEFT calls a transformers method deprecated in v5; the warning is not ours to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def _continue_adapter(model: Any, adapter_dir: str) -> Any:
    """``model`` with a parent's LoRA adapter loaded as the one that trains: the run starts from the parent's
    weights as served, and its result is again one adapter over the same base."""
    from peft import PeftModel

    with _peft_on_transformers_5():
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)


def _merge_adapter(model: Any, adapter_dir: str) -> Any:
    """``model`` with a parent's LoRA adapter merged into its weights, for a full fine-tune of the parent."""
    from peft import PeftModel

    with torch.no_grad(), _peft_on_transformers_5():
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    for parameter in merged.parameters():
        parameter.requires_grad_(True)
    return merged
