"""Tokenize a validated JSONL file line by line, naming the file and line in every error.

The supervised and DPO loaders read files the same way and differ only in what one line becomes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from openft.data.chat_messages import TrainingDataError

T = TypeVar("T")


def tokenized_lines(path: str | Path, tokenize: Callable[[dict[str, Any], int], T]) -> Iterator[tuple[int, T]]:
    """``(line number, tokenize(object, line number))`` for each non-blank line, in file order.

    Raises:
        TrainingDataError: A line is not a JSON object or cannot be tokenized; the message names it.
    """
    with open(path, encoding="utf-8-sig") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{Path(path).name} line {line_no}"
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise TrainingDataError(f"{where}: invalid JSON ({exc})") from exc
            if not isinstance(data, dict):
                raise TrainingDataError(f"{where}: expected a JSON object")
            try:
                item = tokenize(data, line_no)
            except TrainingDataError as exc:
                raise TrainingDataError(f"{where}: {exc}") from exc
            except Exception as exc:  # the chat template rejected the conversation (jinja raise_exception)
                raise TrainingDataError(f"{where}: the chat template failed: {type(exc).__name__}: {exc}") from exc
            yield line_no, item
