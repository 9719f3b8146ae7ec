"""What every recipe does the same way around its training loop: the model, the validation sample,
the adapter on disk and OpenAI's ``results.csv``."""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.training.events import EventWriter
from openft.training.model_setup import TrainableModel, load_trainable_model
from openft.training.spec import TrainingSpec

VALID_SAMPLE_SIZE = 32
"""Validation examples scored at intermediate evaluations (the full set is scored once per epoch)."""
RESULTS_HEADER = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
"""OpenAI's columns of ``results.csv``."""
_RESULTS_KEYS = ["step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy"]
"""The metrics-row key of each of OpenAI's columns."""


def load_model(spec: TrainingSpec, events: EventWriter) -> tuple[BaseModel, TrainableModel]:
    """Seed every RNG from ``spec.seed``, then load the base model as ``spec.training_type`` says.

    Seeding comes first: LoRA's initial weights are drawn while the model loads.

    Raises:
        ValueError: The base model is unknown, or ``spec.dtype`` or ``spec.training_type`` is not valid.
    """
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    base = resolve_base_model(spec.base_model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return base, load_trainable_model(spec, base, events, dtype=resolve_dtype(spec.dtype, base.id, device))


def resolve_base_model(model_id: str) -> BaseModel:
    """The catalog entry for ``model_id``, or a model directory given by path.

    Raises:
        ValueError: ``model_id`` is neither in the catalog nor a directory.
    """
    base = find_base_model(model_id)
    if base is not None:
        return base
    if Path(model_id).is_dir():
        return BaseModel(id=model_id, source="local", path=model_id, context_length=2048, lora_learning_rate=2e-4)
    raise ValueError(f"unknown base model {model_id!r}")


def resolve_dtype(name: str, model_id: str, device: torch.device) -> torch.dtype:
    """The dtype of the frozen base weights: ``auto`` is bf16 on CUDA with bf16 or on an AMX CPU, else fp32.

    ``openft/tiny-chat`` stays in fp32 under ``auto``: it is tiny, and tests compare its numbers exactly.
    fp16 is never chosen (on CPU it is slower than fp32).

    Raises:
        ValueError: ``name`` is not ``auto``, ``float32`` or ``bfloat16``.
    """
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if name != "auto":
        raise ValueError(f"unsupported dtype {name!r}; expected auto, float32 or bfloat16")
    if model_id == TINY_CHAT:
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matmuls run 2x (AVX-512) to 4-8x (AMX) faster than fp32 there."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and (" amx_bf16" in line or " avx512_bf16" in line) for line in f)
    except OSError:
        return False


def validation_sample(n_valid: int, seed: int) -> list[int]:
    """Indices, in file order, of the validation examples scored at intermediate evaluations."""
    return sorted(random.Random(seed).sample(range(n_valid), min(VALID_SAMPLE_SIZE, n_valid)))


def report_skipped_lines(events: EventWriter, lines: Sequence[int], text: str, **data: Any) -> None:
    """A warning event naming the lines of a file that were truncated or skipped, when there are any."""
    if lines:
        listed = ", ".join(map(str, lines))
        events.message(f"{len(lines)} {text}: lines {listed}", level="warn", data={**data, "lines": list(lines)})


def save_adapter(model: Any, tokenizer: Any, directory: Path) -> None:
    """Write the LoRA weights (or the whole model) and the tokenizer, so ``directory`` can be served on its own."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def write_results_csv(history: Sequence[dict[str, Any]], path: Path, extra_columns: Sequence[str] = ()) -> None:
    """OpenAI's ``results.csv``: one row per step, its five columns then ``extra_columns`` (row keys).

    A cell is empty where the step computed nothing for it (validation at most steps, say).
    """

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.8g}"

    keys = [*_RESULTS_KEYS, *extra_columns]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*RESULTS_HEADER, *extra_columns])
        for row in history:
            writer.writerow([row["step"], *(cell(row.get(k)) for k in keys[1:])])
