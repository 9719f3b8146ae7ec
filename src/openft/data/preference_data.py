"""Turn DPO preference lines into two tokenized conversations each: prompt + preferred, prompt + not.

A line is ``{"input": {"messages": [...], "tools": [...]}, "preferred_output": [assistant message],
"non_preferred_output": [assistant message]}`` (checked beforehand by ``data/validation.py``).
Each side is rendered with the chat template by ``chat_data.tokenize_example``; assistant turns
inside ``input`` are history (weight 0), so only the output message carries labels, end-of-turn
token included. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openft.data.chat_data import IGNORE_INDEX, TokenizedExample, tokenize_example
from openft.data.chat_messages import TrainingDataError
from openft.data.jsonl_lines import tokenized_lines


@dataclass(frozen=True)
class PreferencePair:
    """One preference line, both sides tokenized in full (prompt included)."""

    chosen: TokenizedExample
    rejected: TokenizedExample
    line: int
    """1-based line number in the JSONL file."""


def _side(example: dict[str, Any], key: str) -> dict[str, Any]:
    inp = example.get("input")
    outputs = example.get(key)
    if not isinstance(inp, dict) or not isinstance(inp.get("messages"), list) or not inp["messages"]:
        raise TrainingDataError("expected 'input' with a non-empty 'messages' list")
    if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], dict):
        raise TrainingDataError(f"'{key}' must be a list of exactly one assistant message")
    history = [
        {**m, "weight": 0} if isinstance(m, dict) and m.get("role") == "assistant" else m for m in inp["messages"]
    ]
    output = {k: v for k, v in outputs[0].items() if k != "weight"}
    conversation: dict[str, Any] = {"messages": [*history, output]}
    if inp.get("tools"):
        conversation["tools"] = inp["tools"]
    return conversation


def tokenize_preference(example: dict[str, Any], tokenizer: Any, line: int = 0) -> PreferencePair:
    """Tokenize one preference line into its chosen and rejected conversations.

    Raises:
        TrainingDataError: The line is malformed or the chat template cannot render it.
    """
    return PreferencePair(
        chosen=tokenize_example(_side(example, "preferred_output"), tokenizer, line),
        rejected=tokenize_example(_side(example, "non_preferred_output"), tokenizer, line),
        line=line,
    )


def _truncate(example: TokenizedExample, max_seq_len: int) -> TokenizedExample:
    return TokenizedExample(example.input_ids[:max_seq_len], example.labels[:max_seq_len], example.line)


def has_labels(example: TokenizedExample) -> bool:
    """Whether any token after the first carries a label (the first has nothing to predict it from)."""
    return any(label != IGNORE_INDEX for label in example.labels[1:])


def load_preference_pairs(path: str | Path, tokenizer: Any, max_seq_len: int) -> tuple[list[PreferencePair], list[int]]:
    """Read and tokenize a DPO JSONL file, truncating each side to ``max_seq_len`` tokens (from the end).

    Returns:
        ``(pairs, truncated_lines)``: one pair per non-blank line, in file order, and the 1-based
        line numbers where either side was truncated.

    Raises:
        TrainingDataError: A line is not valid JSON or cannot be tokenized; the message names it.
    """
    pairs: list[PreferencePair] = []
    truncated: list[int] = []
    for line_no, pair in tokenized_lines(path, lambda data, line: tokenize_preference(data, tokenizer, line)):
        if max(len(pair.chosen.input_ids), len(pair.rejected.input_ids)) > max_seq_len:
            truncated.append(line_no)
            pair = PreferencePair(_truncate(pair.chosen, max_seq_len), _truncate(pair.rejected, max_seq_len), line_no)
        pairs.append(pair)
    return pairs, truncated
