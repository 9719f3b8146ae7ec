"""The messages of one fine-tuning JSONL line, in the form a chat template renders (no tokenizer, no torch).

Training (``data/chat_data.py``) and the torch-free token counting of ``data/tokenize.py`` both
start here, so a line is read the same way by both.
"""

from __future__ import annotations

import json
from typing import Any


class TrainingDataError(Exception):
    """A training or validation example cannot be turned into tokens; the message names the line."""

    def __init__(self, message: str, *, param: str = "training_file"):
        super().__init__(message)
        self.param = param
        """The spec field naming the file at fault: ``training_file`` or ``validation_file``."""


def _text(content: Any) -> str:
    """A message's content as one string (``None`` -> "", text parts joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise TrainingDataError(f"unsupported content part {kind!r}; only text parts can be trained on")
        return "".join(parts)
    raise TrainingDataError(f"content must be a string or a list of text parts, not {type(content).__name__}")


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call with JSON-string arguments parsed to a dict, the form Hugging Face templates expect."""
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except ValueError:
            pass  # not JSON: the template renders the string as it is
    return {**{k: v for k, v in call.items() if k != "function"}, "type": "function", "function": function}


def normalize_messages(example: dict[str, Any]) -> tuple[list[dict[str, Any]], list[float], list[Any] | None]:
    """The template-ready messages of one JSONL line, each message's weight, and its tools (or None).

    Content becomes a string; ``developer`` becomes ``system``; legacy ``function`` messages,
    ``function_call`` and ``functions`` become ``tool`` messages, ``tool_calls`` and ``tools``;
    ``weight`` (assistant only, default 1) is taken out of the message.

    Args:
        example: One parsed JSONL line.

    Returns:
        ``(messages, weights, tools)`` with ``weights[i]`` for ``messages[i]`` (0 for non-assistant turns).

    Raises:
        TrainingDataError: The line is neither a chat example nor a prompt/completion pair.
    """
    if "messages" not in example and "prompt" in example and "completion" in example:
        example = {
            "messages": [
                {"role": "user", "content": example["prompt"]},
                {"role": "assistant", "content": example["completion"]},
            ]
        }
    raw_messages = example.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise TrainingDataError("expected a non-empty 'messages' list (or 'prompt' and 'completion')")
    messages: list[dict[str, Any]] = []
    weights: list[float] = []
    for raw in raw_messages:
        if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
            raise TrainingDataError("every message must be an object with a 'role'")
        role = {"developer": "system", "function": "tool"}.get(raw["role"], raw["role"])
        message: dict[str, Any] = {"role": role, "content": _text(raw.get("content"))}
        for key in ("name", "tool_call_id"):
            if raw.get(key) is not None:
                message[key] = raw[key]
        calls = raw.get("tool_calls") or (
            [{"type": "function", "function": raw["function_call"]}] if raw.get("function_call") else []
        )
        if calls:
            message["tool_calls"] = [_tool_call(call) for call in calls]
        messages.append(message)
        weights.append(float(raw.get("weight", 1)) if role == "assistant" else 0.0)
    tools = example.get("tools") or (
        [{"type": "function", "function": f} for f in example["functions"]] if example.get("functions") else None
    )
    return messages, weights, tools
