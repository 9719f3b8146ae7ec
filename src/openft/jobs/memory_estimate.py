"""Peak memory of a training process, from the model's shape and the job's largest step (no torch).

The model is read from its ``config.json`` (built, converted, registered or cached models) or from the
GGUF header (SmolLM2 before its first conversion). The peak is the sum of:

* weights: LoRA keeps the frozen base in its training dtype (bf16 on CUDA or a CPU with AMX or
  AVX-512 BF16, else fp32; ``openft/tiny-chat`` always fp32), full fine-tuning every weight in fp32;
* trainable state: fp32 weights, gradients and AdamW's two moments, 16 bytes per trainable parameter
  (the LoRA matrices, or every weight);
* activations kept for the backward pass of the largest step (the ``batch_size`` longest examples
  packed into one row), per layer and token, plus the output layer's logits at those tokens;
* the runtime: the interpreter with torch, transformers and PEFT (or the CUDA context).

It is meant to say early that a job cannot fit (a full fine-tune of a 7B model on a laptop), not to
predict the last megabyte.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openft.models.catalog import TINY_CHAT, BaseModel

MiB = 1024 * 1024
CPU_RUNTIME_BYTES = 700 * MiB
"""Resident size of a training process with torch, transformers and PEFT imported, before the model."""
CUDA_RUNTIME_BYTES = 1024 * MiB
"""CUDA context and allocator reserve on a GPU."""
ACTIVATION_FACTOR = (12, 5)
"""Values kept per token and layer for the backward pass: ~12 x hidden_size (norms, q/k/v, attention
output, residuals) + ~5 x intermediate_size (gate, up, activation, product, down input)."""
TINY_CHAT_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 260,
    "tie_word_embeddings": True,
}
"""``openft/tiny-chat`` before it was first built (``models/tiny.py``); its built ``config.json`` wins."""


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a decoder-only transformer depends on."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tied_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // max(self.num_heads, 1)

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer of one block: q, k, v, o, gate, up, down."""
        h, q, kv, i = (
            self.hidden_size,
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
            self.intermediate_size,
        )
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    @property
    def n_parameters(self) -> int:
        block = sum(a * b for a, b in self.linear_shapes()) + 2 * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return self.num_layers * block + embeddings + self.hidden_size

    def lora_parameters(self, rank: int, target_modules: list[str] | None) -> int:
        names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        chosen = [
            shape
            for name, shape in zip(names, self.linear_shapes(), strict=True)
            if not target_modules or name in target_modules
        ]
        return self.num_layers * sum(rank * (a + b) for a, b in chosen)


def _shape_from_config(config: dict[str, Any]) -> ModelShape:
    hidden = int(config.get("hidden_size") or config.get("n_embd") or 0)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 1)
    return ModelShape(
        hidden_size=hidden,
        intermediate_size=int(config.get("intermediate_size") or 4 * hidden),
        num_layers=int(config.get("num_hidden_layers") or config.get("n_layer") or 0),
        num_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        vocab_size=int(config.get("vocab_size") or 0),
        tied_embeddings=bool(config.get("tie_word_embeddings", True)),
    )


@functools.lru_cache(maxsize=8)
def _gguf_shape(path: str) -> ModelShape:
    from gguf import GGUFReader  # numpy only

    reader = GGUFReader(path)

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        if field is None or not field.data:
            return None
        return field.parts[field.data[0]][0]

    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    names = {t.name for t in reader.tensors}
    vocab = value(f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return _shape_from_config(
        {
            "hidden_size": value(f"{arch}.embedding_length"),
            "intermediate_size": value(f"{arch}.feed_forward_length"),
            "num_hidden_layers": value(f"{arch}.block_count"),
            "num_attention_heads": value(f"{arch}.attention.head_count"),
            "num_key_value_heads": value(f"{arch}.attention.head_count_kv"),
            "vocab_size": vocab,
            "tie_word_embeddings": "output.weight" not in names,
        }
    )


def model_shape(base: BaseModel, models_dir: Path) -> ModelShape:
    """The shape of ``base`` without loading its weights.

    Raises:
        ValueError: No configuration of the model can be read.
    """
    directory = models_dir / base.cache_name if base.source in ("tiny", "gguf") else Path(base.path or "")
    try:
        return _shape_from_config(json.loads((directory / "config.json").read_text()))
    except (OSError, ValueError):
        pass
    if base.source == "gguf" and base.path:
        return _gguf_shape(base.path)
    if base.id == TINY_CHAT:
        return _shape_from_config(TINY_CHAT_SHAPE)
    raise ValueError(f"cannot read the configuration of {base.id}")


# -- the device --------------------------------------------------------------------------------------


def training_device() -> str:
    """``cuda`` when this machine's torch can use a GPU here (checked without importing torch), else ``cpu``."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return "cpu"
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return "cuda" if (lib / "libtorch_cuda.so").exists() and Path("/dev/nvidiactl").exists() else "cpu"


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16, where training picks bf16 for a frozen base (``recipes/supervised.py``)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and (" amx_bf16" in line or " avx512_bf16" in line) for line in f)
    except OSError:
        return False


def device_memory_bytes(device: str) -> int:
    """The GPU's memory (``nvidia-smi``), or the host's RAM within this process's cgroup limit."""
    if device == "cuda":
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            return int(out.split()[0]) * MiB
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return 0  # unknown: nothing is said to fit
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


# -- the estimate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    peak_bytes: int
    weights_bytes: int
    trainable_state_bytes: int
    activation_bytes: int
    runtime_bytes: int


def largest_step_tokens(lengths: list[int], batch_size: int) -> int:
    """Tokens of the ``batch_size`` longest examples: no step of any shuffled order packs more."""
    return sum(sorted(lengths, reverse=True)[:batch_size])


def estimate_memory(
    shape: ModelShape,
    *,
    device: str,
    base_id: str,
    training_type: str,
    lora_rank: int,
    target_modules: list[str] | None,
    step_tokens: int,
) -> MemoryEstimate:
    """The peak memory of training ``shape`` with ``step_tokens`` tokens in the largest step."""
    full = training_type == "full"
    bf16 = not full and base_id != TINY_CHAT and (device == "cuda" or cpu_has_fast_bf16())
    weight_bytes = 2 if bf16 else 4
    trainable = shape.n_parameters if full else shape.lora_parameters(lora_rank, target_modules)
    weights = 0 if full else shape.n_parameters * weight_bytes  # full: counted in the trainable state
    state = 16 * trainable
    per_token = ACTIVATION_FACTOR[0] * shape.hidden_size + ACTIVATION_FACTOR[1] * shape.intermediate_size
    activations = step_tokens * (shape.num_layers * per_token * weight_bytes + 2 * shape.vocab_size * 4)
    runtime = CUDA_RUNTIME_BYTES if device == "cuda" else CPU_RUNTIME_BYTES
    return MemoryEstimate(
        peak_bytes=weights + state + activations + runtime,
        weights_bytes=weights,
        trainable_state_bytes=state,
        activation_bytes=activations,
        runtime_bytes=runtime,
    )
