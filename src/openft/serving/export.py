"""Export a fine-tuned model or checkpoint for other runtimes (imports torch only for ``merged``).

``peft``: the LoRA adapter as-is (plus tokenizer files), its ``base_model_name_or_path`` set to the
catalog base id, for ``vllm serve BASE --enable-lora --lora-modules NAME=DIR`` or
``PeftModel.from_pretrained``. ``merged``: base + adapter merged into plain transformers weights
(``config.json``, ``model.safetensors``, tokenizer and chat template) for
``AutoModelForCausalLM.from_pretrained(DIR)`` or ``vllm serve DIR``.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from openft.errors import InvalidRequest
from openft.serving.backend import ServedModel

ExportFormat = Literal["peft", "merged"]

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


def _export_merged(served: ServedModel, adapter_dir: Path, models_dir: Path, target: Path) -> None:
    import torch
    from peft import PeftModel

    from openft.models.loader import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(served.base, models_dir)
    with torch.no_grad():
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.config.name_or_path = served.id
    merged.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def export_model(
    served: ServedModel,
    models_dir: Path,
    output: Path,
    *,
    fmt: ExportFormat,
    overwrite: bool = False,
) -> Path:
    """Write ``served`` (a fine-tuned model or checkpoint) to ``output`` in format ``fmt``.

    The export is built in a temporary sibling directory and moved into place at the end, so a
    failure leaves ``output`` untouched.

    Raises:
        InvalidRequest: a base model, an unknown format, a missing adapter, or a non-empty ``output``
            (with ``overwrite``, only a previous openft export is replaced).
    """
    if served.adapter_dir is None:
        raise InvalidRequest(
            "Only fine-tuned models and checkpoints can be exported.", param="model", code="invalid_model"
        )
    if fmt not in ("peft", "merged"):
        raise InvalidRequest(f"Unknown export format {fmt!r}; expected 'peft' or 'merged'.", param="format")
    adapter_dir = Path(served.adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InvalidRequest(f"The adapter of `{served.id}` is missing ({adapter_dir}).", param="model")
    output = Path(output).expanduser().absolute()
    _check_output(output, overwrite)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.export-", dir=output.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is meant to be shared
        if fmt == "peft":
            _export_peft(served, adapter_dir, tmp)
        else:
            _export_merged(served, adapter_dir, models_dir, tmp)
        marker = {"model": served.id, "base_model": served.base.id, "format": fmt}
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
