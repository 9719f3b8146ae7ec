"""Large valid chat training files, written on the fly (tests need files whose validation takes seconds)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from openft.data.validation import validate_file

BLOCK_LINES = 100


def write_chat_file(path: Path, megabytes: float, *, turns: int = 10) -> int:
    """Write valid tiny-chat examples of ``turns`` short user/assistant pairs to ``path`` until it holds
    ``megabytes``; returns how many. Many short messages a line make validation (which checks each
    message) several times slower than the upload's check that each line is JSON."""
    block = "".join(
        json.dumps({"messages": [m for t in range(turns) for m in _turn(f"{i}.{t}")]}) + "\n"
        for i in range(BLOCK_LINES)
    )
    copies = max(1, round(megabytes * 1024 * 1024 / len(block)))
    with path.open("w") as f:
        for _ in range(copies):
            f.write(block)
    return copies * BLOCK_LINES


def _turn(tag: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {tag}?"}, {"role": "assistant", "content": f"Answer {tag}."}]


def write_slow_chat_file(path: Path, seconds: float, *, max_megabytes: float = 200) -> float:
    """Write a chat file whose validation takes about ``seconds`` on this machine as loaded now (timed on
    a sample), up to ``max_megabytes``; returns its size in megabytes."""
    sample_mb = 2.0
    write_chat_file(path, sample_mb)
    started = time.perf_counter()
    assert validate_file(path).ok
    per_mb = (time.perf_counter() - started) / sample_mb
    megabytes = min(max_megabytes, max(sample_mb, seconds / per_mb))
    write_chat_file(path, megabytes)
    return megabytes
