"""Tokenized training data, cached on disk so a file is tokenized once per tokenizer and length.

The key is the file's SHA-256, a fingerprint of the tokenizer (its full ``tokenizer.json``, chat
template and special tokens), the method, ``max_seq_len`` and the source of ``chat_data`` and
``data/chat_messages`` (so a change in how examples are tokenized invalidates every entry). An
entry is one uncompressed ``.npz`` of flat int32 arrays, written atomically; loading one takes
milliseconds where tokenizing takes seconds to minutes. The directory is
``$OPENFT_HOME/cache/tokenized`` and keeps the ``MAX_ENTRIES`` most recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from openft.data import chat_data, chat_messages
from openft.data.chat_data import TokenizedExample, load_chat_examples

MAX_ENTRIES = 64
"""Entries kept; the least recently used beyond this are deleted after each write."""
_FORMAT = 1


def default_cache_dir() -> Path:
    """``$OPENFT_HOME/cache/tokenized``."""
    from openft.settings import Settings

    return Settings().home / "cache" / "tokenized"


def cached_chat_examples(
    path: str | Path,
    tokenizer: Any,
    max_seq_len: int,
    *,
    method: str = "supervised",
    cache_dir: Path | None = None,
) -> tuple[list[TokenizedExample], list[int]]:
    """:func:`~openft.data.chat_data.load_chat_examples`, from the cache when this input was seen before.

    Args:
        path: The JSONL file.
        tokenizer: A Hugging Face fast tokenizer with a chat template.
        max_seq_len: Examples longer than this are truncated.
        method: The fine-tuning method the examples are read for (part of the key).
        cache_dir: Where entries live; default :func:`default_cache_dir`.

    Returns:
        ``(examples, truncated_lines)``, equal to what ``load_chat_examples`` returns.

    Raises:
        TrainingDataError: A line cannot be tokenized (errors are never cached).
    """
    directory = cache_dir or default_cache_dir()
    entry = directory / f"{cache_key(path, tokenizer, method, max_seq_len)}.npz"
    try:
        result = _read(entry)
        os.utime(entry)  # recently used
        return result
    except (OSError, ValueError, KeyError):
        pass  # absent or unreadable: tokenize and (re)write
    examples, truncated = load_chat_examples(path, tokenizer, max_seq_len)
    try:
        _write(entry, examples, truncated)
        _evict(directory)
    except OSError:
        pass  # a read-only or full disk only costs the next run the tokenization
    return examples, truncated


def cache_key(path: str | Path, tokenizer: Any, method: str, max_seq_len: int) -> str:
    """The hex digest naming the entry of this (file, tokenizer, method, max_seq_len, code)."""
    digest = hashlib.sha256()
    for part in (
        str(_FORMAT),
        file_sha256(path),
        tokenizer_fingerprint(tokenizer),
        method,
        str(max_seq_len),
        *(hashlib.sha256(Path(str(module.__file__)).read_bytes()).hexdigest() for module in (chat_data, chat_messages)),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of everything that decides the tokens: vocabulary, merges, normalizers, template, specials."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update((backend.to_str() if backend is not None else repr(tokenizer.get_vocab())).encode())
    digest.update(str(getattr(tokenizer, "chat_template", None)).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    digest.update(type(tokenizer).__name__.encode())
    return digest.hexdigest()


def _write(entry: Path, examples: list[TokenizedExample], truncated: list[int]) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.zeros(len(examples) + 1, dtype=np.int64)
    np.cumsum([len(e.input_ids) for e in examples], out=offsets[1:])
    input_ids = np.fromiter((t for e in examples for t in e.input_ids), dtype=np.int32, count=int(offsets[-1]))
    labels = np.fromiter((t for e in examples for t in e.labels), dtype=np.int32, count=int(offsets[-1]))
    lines = np.array([e.line for e in examples], dtype=np.int64)
    truncated_lines = np.array(truncated, dtype=np.int64)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=entry.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, input_ids=input_ids, labels=labels, offsets=offsets, lines=lines, truncated=truncated_lines)
        os.replace(tmp, entry)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(entry: Path) -> tuple[list[TokenizedExample], list[int]]:
    with np.load(entry) as data:
        input_ids = data["input_ids"].tolist()
        labels = data["labels"].tolist()
        offsets = data["offsets"].tolist()
        lines = data["lines"].tolist()
        truncated = data["truncated"].tolist()
    examples = [
        TokenizedExample(input_ids=input_ids[a:b], labels=labels[a:b], line=line)
        for a, b, line in zip(offsets[:-1], offsets[1:], lines, strict=True)
    ]
    return examples, truncated


def _evict(directory: Path) -> None:
    entries = sorted(directory.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        old.unlink(missing_ok=True)
