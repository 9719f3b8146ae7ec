"""Load a catalog base model with transformers, offline (imports torch: training and serving only).

GGUF weights are de-quantized once (about 15-25 s for SmolLM2-135M) and cached as safetensors
under ``$OPENFT_HOME/models``, so later loads take about a second.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openft.models.catalog import BaseModel

# Nothing is ever fetched from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _convert_gguf(gguf_file: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        # The weights are de-quantized already; dropping the GGUF quantizer makes them serializable.
        model.hf_quantizer = None  # type: ignore[assignment]  # nn.Module's __setattr__ is typed for tensors and modules
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def model_directory(base: BaseModel, models_dir: Path) -> Path:
    """A directory transformers can load ``base`` from, building or converting it on first use."""
    if base.source == "tiny":
        from openft.models.tiny import build_tiny_chat

        return build_tiny_chat(models_dir / base.cache_name)
    if base.source == "gguf":
        assert base.path is not None
        target = models_dir / base.cache_name
        if not (target / "config.json").exists():
            _convert_gguf(Path(base.path), target)
        return target
    assert base.path is not None
    return Path(base.path)


def load_tokenizer(base: BaseModel, models_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_directory(base, models_dir))


def load_model_and_tokenizer(
    base: BaseModel, models_dir: Path, *, dtype: torch.dtype | None = None, **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``base`` for training or inference (SDPA attention, fp32 unless ``dtype`` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = model_directory(base, models_dir)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(
        directory, dtype=dtype or torch.float32, attn_implementation="sdpa", **kwargs
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
