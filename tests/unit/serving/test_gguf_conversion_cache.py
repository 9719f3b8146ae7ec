"""The de-quantized copy of a GGUF base model is reused while the GGUF is the same file (by this home,
and by a new home through the user's cache), and converted again (replacing the old copy) once it
changed: ``models/loader.py``'s fingerprint stamp."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openft.models.catalog import BaseModel
from openft.models.loader import SOURCE_STAMP, gguf_fingerprint, model_directory, shared_cache_dir


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _gguf_model(path: Path) -> BaseModel:
    return BaseModel(id="test/gguf-model", source="gguf", path=str(path), context_length=128, lora_learning_rate=1e-4)


def _converted(target: Path, fingerprint: str) -> Path:
    """A directory as a finished conversion leaves it (config and stamp; no weights needed here)."""
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
    target = _converted(tmp_path / "models" / base.cache_name, gguf_fingerprint(gguf))
    assert model_directory(base, tmp_path / "models") == target


def test_a_new_home_links_to_the_conversion_in_the_user_cache(tmp_path: Path, user_cache: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a real GGUF: converting it would fail")
    base = _gguf_model(gguf)
    fingerprint = gguf_fingerprint(gguf)
    shared = _converted(shared_cache_dir() / f"{base.cache_name}-{fingerprint}", fingerprint)
    assert shared.is_relative_to(user_cache)
    for home in ("home-1", "home-2"):
        target = model_directory(base, tmp_path / home / "models")
        assert target.is_symlink() and target.resolve() == shared.resolve()
        assert json.loads((target / SOURCE_STAMP).read_text())["fingerprint"] == fingerprint


def test_a_conversion_of_another_gguf_is_converted_again(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a real GGUF either")
    base = _gguf_model(gguf)
    target = _converted(tmp_path / "models" / base.cache_name, "fingerprint-of-an-older-file")
    with pytest.raises(Exception):  # noqa: B017  # transformers' GGUF reader refuses the file: it tried
        model_directory(base, tmp_path / "models")
    assert json.loads((target / SOURCE_STAMP).read_text())["fingerprint"] == "fingerprint-of-an-older-file"
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no leftovers
    assert not [p for p in shared_cache_dir().iterdir() if p.name.startswith(".")]
