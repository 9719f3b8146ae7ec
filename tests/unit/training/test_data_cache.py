"""openft.training.data_cache: a cached tokenization is the tokenization, and the key sees every input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openft.data.chat_data import load_chat_examples
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import load_tokenizer
from openft.training import data_cache

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return load_tokenizer(base, tmp_path_factory.mktemp("models"))


def test_second_load_comes_from_the_cache_and_equals_a_fresh_tokenization(
    tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    path = ASSETS / "weights.jsonl"
    fresh = load_chat_examples(path, tokenizer, 40)
    assert fresh[1], "the asset should have examples longer than 40 tokens"
    first = data_cache.cached_chat_examples(path, tokenizer, 40, cache_dir=cache)
    assert first == fresh
    assert len(list(cache.glob("*.npz"))) == 1

    def no_tokenizing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tokenized again")

    monkeypatch.setattr(data_cache, "load_chat_examples", no_tokenizing)
    assert data_cache.cached_chat_examples(path, tokenizer, 40, cache_dir=cache) == fresh


def test_the_key_changes_with_the_file_the_length_the_method_and_the_tokenizer(tokenizer: Any, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text((ASSETS / "tiny_train.jsonl").read_text())
    key = data_cache.cache_key(path, tokenizer, "supervised", 1024)
    assert key == data_cache.cache_key(path, tokenizer, "supervised", 1024)
    assert key != data_cache.cache_key(path, tokenizer, "supervised", 512)
    assert key != data_cache.cache_key(path, tokenizer, "dpo", 1024)
    original = tokenizer.chat_template
    try:
        tokenizer.chat_template = original + " "
        assert key != data_cache.cache_key(path, tokenizer, "supervised", 1024)
    finally:
        tokenizer.chat_template = original
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    assert key != data_cache.cache_key(path, tokenizer, "supervised", 1024)


def test_a_corrupt_entry_is_rebuilt(tokenizer: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = ASSETS / "tiny_train.jsonl"
    expected = data_cache.cached_chat_examples(path, tokenizer, 1024, cache_dir=cache)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"not a zip")
    assert data_cache.cached_chat_examples(path, tokenizer, 1024, cache_dir=cache) == expected
    assert entry.stat().st_size > 100
