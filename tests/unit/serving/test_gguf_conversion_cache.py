"""The de-quantized copy of a GGUF base model is reused while the GGUF is the same file, and converted
again (replacing the old copy) once it changed: ``models/loader.py``'s fingerprint stamp."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openft.models.catalog import BaseModel
from openft.models.loader import SOURCE_STAMP, gguf_fingerprint, model_directory


def _gguf_model(path: Path) -> BaseModel:
    return BaseModel(id="test/gguf-model", source="gguf", path=str(path), context_length=128, lora_learning_rate=1e-4)


def _converted(models_dir: Path, base: BaseModel, fingerprint: str) -> Path:
    """A directory as a finished conversion leaves it (config and stamp; no weights needed here)."""
    target = models_dir / base.cache_name
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / SOURCE_STAMP).write_text(json.dumps({"fingerprint": fingerprint}))
    return target


def test_fingerprint_follows_the_file_contents_size_and_mtime(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1000))
    first, mtime = gguf_fingerprint(gguf), gguf.stat().st_mtime_ns
    assert gguf_fingerprint(gguf) == first
    gguf.write_bytes(b"GGUF" + bytes(999) + b"\x01")  # same size and mtime, other bytes
    os.utime(gguf, ns=(mtime, mtime))
    assert gguf_fingerprint(gguf) != first
    second = gguf_fingerprint(gguf)
    os.utime(gguf, ns=(gguf.stat().st_atime_ns, gguf.stat().st_mtime_ns + 10**9))  # touched
    assert gguf_fingerprint(gguf) != second


def test_a_conversion_of_the_same_gguf_is_reused_without_reading_it(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a real GGUF: converting it would fail")
    base = _gguf_model(gguf)
    target = _converted(tmp_path / "models", base, gguf_fingerprint(gguf))
    assert model_directory(base, tmp_path / "models") == target


def test_a_conversion_of_another_gguf_is_converted_again(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a real GGUF either")
    base = _gguf_model(gguf)
    target = _converted(tmp_path / "models", base, "fingerprint-of-an-older-file")
    with pytest.raises(Exception):  # noqa: B017  # transformers' GGUF reader refuses the file: it tried
        model_directory(base, tmp_path / "models")
    assert json.loads((target / SOURCE_STAMP).read_text())["fingerprint"] == "fingerprint-of-an-older-file"
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no leftovers
