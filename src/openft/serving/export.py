"""Export a fine-tuned model or checkpoint for other runtimes (imports torch only for ``merged``/``gguf``).

``peft``: the LoRA adapter as-is (plus tokenizer files), its ``base_model_name_or_path`` set to the
catalog base id, for ``vllm serve BASE --enable-lora --lora-modules NAME=DIR`` or
``PeftModel.from_pretrained``. ``merged``: base + adapter merged into plain transformers weights
(``config.json``, ``model.safetensors``, tokenizer and chat template) for
``AutoModelForCausalLM.from_pretrained(DIR)`` or ``vllm serve DIR``. ``gguf``: the same merged
weights as one GGUF file (``serving/gguf_export.py``) for llama.cpp, Ollama and LM Studio.
A full fine-tune (a whole model, no adapter) exports as ``merged`` or ``gguf``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from openft.errors import InvalidRequest
from openft.serving.backend import ServedModel

ExportFormat = Literal["peft", "merged", "gguf"]
FORMATS: tuple[str, ...] = ("peft", "merged", "gguf")

MARKER = "openft_export.json"
"""Written into every export; also what lets ``overwrite`` replace a directory."""

_PEFT_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "vocab.*",
    "merges.txt",
    "README.md",
)


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise InvalidRequest(f"{output} exists and is not a directory.", param="output")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise InvalidRequest(f"{output} is not empty; pass overwrite to replace it.", param="output")
        if not (output / MARKER).exists():
            # Never wipe an arbitrary directory: only a previous export is replaced.
            raise InvalidRequest(
                f"{output} is not empty and is not a previous openft export; choose an empty directory.",
                param="output",
            )


def _export_peft(served: ServedModel, adapter_dir: Path, target: Path) -> None:
    for path in sorted(adapter_dir.iterdir()):
        if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in _PEFT_FILES):
            shutil.copy2(path, target / path.name)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = served.base.id
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _merged_model(served: ServedModel, models_dir: Path) -> tuple[Any, Any]:
    """The model's full weights (base + adapter merged, or the full fine-tune) and its tokenizer."""
    import torch
    from peft import PeftModel

    from openft.models.loader import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(served.base, models_dir)
    if served.adapter_dir is not None:
        with torch.no_grad():
            model = PeftModel.from_pretrained(model, served.adapter_dir).merge_and_unload()
    model.config.name_or_path = served.id
    return model, tokenizer


def _export_merged(served: ServedModel, models_dir: Path, target: Path) -> None:
    model, tokenizer = _merged_model(served, models_dir)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def model_slug(model_id: str) -> str:
    """``ft:org/base:team:suffix:id`` -> ``org-base-team-suffix-id``: a file name, and a name Ollama accepts."""
    return re.sub(r"[^a-z0-9._]+", "-", model_id.removeprefix("ft:").lower()).strip("-.") or "model"


def gguf_file_name(model_id: str, quantization: str) -> str:
    """The GGUF export's file name: ``org-base-team-suffix-id-f16.gguf``."""
    return f"{model_slug(model_id)}-{quantization}.gguf"


def _export_gguf(served: ServedModel, models_dir: Path, target: Path, quantization: str) -> str:
    from transformers import AutoConfig

    from openft.models.loader import load_tokenizer, model_directory
    from openft.serving.gguf_export import gguf_architecture, write_gguf
    from openft.serving.gguf_vocab import gguf_vocab

    # An unsupported model or tokenizer is refused before the slow loading and merging of weights.
    config = AutoConfig.from_pretrained(model_directory(served.base, models_dir))
    gguf_architecture(config)
    source = Path(served.base.path) if served.base.source == "gguf" and served.base.path else None
    vocab = gguf_vocab(load_tokenizer(served.base, models_dir), config.vocab_size, source_gguf=source)
    model, _ = _merged_model(served, models_dir)
    name = gguf_file_name(served.id, quantization)
    write_gguf(model, vocab, target / name, quantization=quantization, name=served.id, base_model=served.base.id)
    return name


def _check_exportable(served: ServedModel, fmt: str, quantization: str | None) -> None:
    if fmt not in FORMATS:
        raise InvalidRequest(f"Unknown export format {fmt!r}; expected one of {list(FORMATS)}.", param="format")
    if quantization is not None and fmt != "gguf":
        raise InvalidRequest("A quantization applies to the gguf format only.", param="quantization")
    if fmt == "gguf":
        from openft.serving.gguf_export import QUANTIZATIONS

        if quantization not in (None, *QUANTIZATIONS):
            raise InvalidRequest(
                f"Unknown GGUF quantization {quantization!r}; expected one of {list(QUANTIZATIONS)}.",
                param="quantization",
            )
    # The registry serves a full fine-tune as its own base model, named by its ft: id.
    full_fine_tune = served.adapter_dir is None and served.id.startswith("ft:") and served.base.id == served.id
    if served.adapter_dir is None and not full_fine_tune:
        raise InvalidRequest(
            "Only fine-tuned models and checkpoints can be exported.", param="model", code="invalid_model"
        )
    if full_fine_tune and fmt == "peft":
        raise InvalidRequest(
            f"`{served.id}` is a full fine-tune with no LoRA adapter; export it as merged or gguf.", param="format"
        )
    if served.adapter_dir is not None and not (Path(served.adapter_dir) / "adapter_config.json").is_file():
        raise InvalidRequest(f"The adapter of `{served.id}` is missing ({served.adapter_dir}).", param="model")


def export_model(
    served: ServedModel,
    models_dir: Path,
    output: Path,
    *,
    fmt: ExportFormat,
    overwrite: bool = False,
    quantization: str | None = None,
) -> Path:
    """Write ``served`` (a fine-tuned model or checkpoint) to ``output`` in format ``fmt``.

    ``quantization`` (gguf only, default ``f16``): ``f16``, ``bf16`` or ``q8_0``; the GGUF file is
    ``output / gguf_file_name(served.id, quantization)``. The export is built in a temporary sibling
    directory and moved into place at the end, so a failure leaves ``output`` untouched.

    Raises:
        InvalidRequest: a base model, an unknown format or quantization, a missing adapter, a model
            GGUF cannot hold, or a non-empty ``output`` (with ``overwrite``, only a previous openft
            export is replaced).
    """
    _check_exportable(served, fmt, quantization)
    output = Path(output).expanduser().absolute()
    _check_output(output, overwrite)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.export-", dir=output.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is meant to be shared
        marker: dict[str, str] = {"model": served.id, "base_model": served.base.id, "format": fmt}
        if fmt == "peft":
            assert served.adapter_dir is not None
            _export_peft(served, Path(served.adapter_dir), tmp)
        elif fmt == "merged":
            _export_merged(served, models_dir, tmp)
        else:
            quantization = quantization or "f16"
            marker |= {"quantization": quantization, "file": _export_gguf(served, models_dir, tmp, quantization)}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if output.exists():
            if any(output.iterdir()):
                shutil.rmtree(output)  # a previous export (checked above)
            else:
                output.rmdir()
        tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output
