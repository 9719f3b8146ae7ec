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
    cache_dir: str | None = None
    """Where tokenized files are cached (``$OPENFT_HOME/cache/tokenized``); None: that of the environment."""
    """Examples longer than this are truncated (and reported); None: the model's context length."""

    keep_checkpoints: int = 3
    """Per-epoch checkpoints kept on disk (OpenAI keeps the last three)."""

    eval_every: int | None = None
    """Steps between validation-loss evaluations on a sample of the validation set; None: auto."""

    dtype: str = "auto"
    """``auto`` (bf16 where the CPU has AMX/avx512_bf16 or on CUDA, else fp32), ``float32`` or ``bfloat16``."""

    threads: int | None = None
    """torch intra-op threads; None: all cores."""

    resume_from: str | None = None
    """A full-state directory (``{output_dir}/state/step-N``) to continue from; see ``training/checkpointing.py``."""

    save_state_every_steps: int | None = None
    """Steps between full-state saves within an epoch; None: by time (``save_state_every_seconds``)."""

    save_state_every_seconds: float | None = 60.0
    """Wall-clock seconds between full-state saves within an epoch when no step interval is set."""

    integrations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The job's ``integrations`` (``wandb``, ``mlflow``): where ``training/tracking.py`` logs metrics."""

    grader: dict[str, Any] | None = None
    """Reinforcement: the job's grader (``method.reinforcement.grader``), already checked."""

    eval_interval: int | None = None
    """Reinforcement: steps between validation-reward evaluations; None: about ten over the run."""

    eval_samples: int | None = None
    """Reinforcement: completions per validation prompt at each evaluation (1: greedy); None: 1."""

    compute_multiplier: float = 1.0
    """Reinforcement: scales the completions sampled per training prompt (4 at 1.0)."""

    reasoning_effort: str = "default"
    """Reinforcement: ``low``/``default``/``medium``/``high`` scale the most tokens a completion may have."""

    private_dirs: list[str] = dataclasses.field(default_factory=list)
    """Directories a python grader must not see (the server's data and database directories)."""

    python_grader_timeout_seconds: float = 30.0
    """Reinforcement: wall-clock and CPU limit of one python grader run."""

    allow_unconfined_python_graders: bool = False
    """Reinforcement: run python graders even where they cannot be confined (the server's setting)."""

    training_type: str = "lora"
    """``lora`` (adapters over a frozen base) or ``full`` (every weight; saves a whole model)."""

    lora_target_modules: list[str] | None = None
    """Module names LoRA adapts (e.g. ``["q_proj", "v_proj"]``); None: every linear layer but the head."""

    beta: float = 0.1
    """DPO: how far the policy may move from the reference (higher: closer to it)."""

    init_adapter: str | None = None
    """A LoRA parent's adapter directory the run starts from (``jobs/lineage.py``): LoRA continues training
    it (its rank, alpha and target modules win), full fine-tuning merges it into ``base_model`` first."""

    early_stopping_eval_every_steps: int | None = None
    """Early stopping (``training/early_stopping.py``): steps between full validations; None: off."""
    early_stopping_patience: int = 1
    """Early stopping: full validations without an improvement after which the run stops."""
    early_stopping_min_delta: float = 0.0
    """Early stopping: the decrease of the validation loss that counts as an improvement."""

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
