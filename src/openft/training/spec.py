"""TrainingSpec: the only input of a training process, written by the worker as ``spec.json``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainingSpec:
    """Everything a recipe needs; every ``"auto"`` is already resolved (see ``jobs/spec.py``)."""

    job_id: str
    """The job this run belongs to (for logs and tracking)."""

    method: str
    """``supervised`` (``dpo`` and ``reinforcement`` recipes live beside it)."""

    base_model: str
    """Catalog id of the base model, e.g. ``openft/tiny-chat`` or ``HuggingFaceTB/SmolLM2-135M-Instruct``."""

    models_dir: str
    """Where converted/built base models are cached (``$OPENFT_HOME/models``)."""

    training_file: str
    """Local path of the training JSONL."""

    validation_file: str | None
    """Local path of the validation JSONL, or None."""

    output_dir: str
    """Directory the run writes into: ``events.jsonl``, ``checkpoints/step-N/``, ``adapter/``, ``results.csv``."""

    n_epochs: int
    batch_size: int
    """Examples per optimizer step."""

    learning_rate_multiplier: float
    learning_rate: float
    """Absolute peak learning rate: the base model's LoRA rate times the multiplier."""

    seed: int

    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    warmup_ratio: float = 0.05
    max_seq_len: int | None = None
    """Examples longer than this are truncated (and reported); None: the model's context length."""

    keep_checkpoints: int = 3
    """Per-epoch checkpoints kept on disk (OpenAI keeps the last three)."""

    eval_every: int | None = None
    """Steps between validation-loss evaluations on a sample of the validation set; None: auto."""

    dtype: str = "auto"
    """``auto`` (bf16 where the CPU has AMX/avx512_bf16 or on CUDA, else fp32), ``float32`` or ``bfloat16``."""

    threads: int | None = None
    """torch intra-op threads; None: all cores."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def write(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: Path) -> TrainingSpec:
        return cls.from_dict(json.loads(path.read_text()))
