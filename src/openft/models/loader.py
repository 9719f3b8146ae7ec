"""Load a catalog base model with transformers, offline (imports torch: training and serving only).

GGUF weights are de-quantized once (about 15-25 s for SmolLM2-135M) and cached as safetensors, so
later loads take about a second. The conversion is kept in the user's cache (``shared_cache_dir``,
named by the GGUF's fingerprint), which every home of this user reuses, and
``$OPENFT_HOME/models/<model>`` links to it: a new home's first request does not convert again.
Where that cache cannot be written, the conversion goes into the home itself. A converted directory
records the fingerprint of the GGUF it came from (``gguf_fingerprint``: size, modification time and
a hash of the file's first MiBs, where its metadata and tensor index are); a GGUF that changed (a new
wheel) is converted again, and the new directory or link replaces the old one atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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


SOURCE_STAMP = "openft-source.json"
"""The file in a converted model directory that names the fingerprint of its GGUF."""


def gguf_fingerprint(gguf_file: Path) -> str:
    """Identifies a GGUF file's contents without reading its weights: size, mtime, first 4 MiB."""
    stat = gguf_file.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    with gguf_file.open("rb") as f:
        digest.update(f.read(4 << 20))
    return digest.hexdigest()[:32]


def _converted_from(directory: Path) -> str | None:
    """The fingerprint a converted directory records (None: none, or no conversion there)."""
    try:
        stamp = json.loads((directory / SOURCE_STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp.get("fingerprint") if isinstance(stamp, dict) else None


def _convert_gguf(gguf_file: Path, target: Path, fingerprint: str) -> None:
    """De-quantize ``gguf_file`` into ``target``: written beside it, then renamed into place."""
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
        (tmp / SOURCE_STAMP).write_text(json.dumps({"gguf": str(gguf_file), "fingerprint": fingerprint}))
        _replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_directory(new: Path, target: Path) -> None:
    """Move ``new`` (a directory or a link to one) to ``target``; a stale ``target`` is moved aside
    first. Losing a race to another process doing the same leaves its result in place (``new`` is
    then removed by the caller)."""
    if os.path.lexists(target):
        stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=target.parent))
        try:
            with contextlib.suppress(OSError):  # another process moved it first
                os.rename(target, stale / "old")
        finally:
            shutil.rmtree(stale, ignore_errors=True)
    with contextlib.suppress(OSError):  # another process put its result there first: it stays
        os.rename(new, target)


def shared_cache_dir() -> Path:
    """Where conversions are shared by every home of this user: ``$XDG_CACHE_HOME/openft/converted``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "openft" / "converted"


def _is_conversion(directory: Path, fingerprint: str) -> bool:
    return _converted_from(directory) == fingerprint and (directory / "config.json").exists()


def _gguf_directory(gguf: Path, target: Path) -> Path:
    """``target``, holding (or linking to) the conversion of ``gguf``: made or linked on first use."""
    fingerprint = gguf_fingerprint(gguf)
    if _is_conversion(target, fingerprint):
        return target
    shared = shared_cache_dir() / f"{target.name}-{fingerprint}"
    if not _is_conversion(shared, fingerprint):
        try:
            shared.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # no writable user cache: this home keeps its own conversion
            _convert_gguf(gguf, target, fingerprint)
            return target
        _convert_gguf(gguf, shared, fingerprint)
    target.parent.mkdir(parents=True, exist_ok=True)
    link = target.parent / f".link-{os.getpid()}-{target.name}"
    if os.path.lexists(link):
        link.unlink()
    os.symlink(shared, link, target_is_directory=True)
    _replace_directory(link, target)
    if os.path.lexists(link):
        link.unlink()
    return target


def model_directory(base: BaseModel, models_dir: Path) -> Path:
    """A directory transformers can load ``base`` from, building or converting it on first use."""
    if base.source == "tiny":
        from openft.models.tiny import build_tiny_chat

        return build_tiny_chat(models_dir / base.cache_name)
    if base.source == "gguf":
        assert base.path is not None
        return _gguf_directory(Path(base.path), models_dir / base.cache_name)
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
