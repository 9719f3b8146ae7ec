"""Tool calls in generated text: ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks.

The Hermes / Qwen convention, also the one the tiny-chat template renders. Pure Python.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    """``call_`` and 24 random letters and digits, as OpenAI's ids look."""
    return "call_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def _call(body: str) -> dict[str, Any] | None:
    """The OpenAI tool call of one block's inside, or None when it is not a valid call."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    args = data.get("arguments", data.get("parameters", {}))
    if args is None:
        args = {}
    # OpenAI sends arguments as a JSON string; a model may write either an object or that string.
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return {"id": new_call_id(), "type": "function", "function": {"name": data["name"], "arguments": arguments}}


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Split generated ``text`` into its remaining content (None when blank) and its tool calls.

    Blocks whose inside is not a JSON object with a ``name`` stay in the content as they were.
    Without any valid call the text is returned unchanged.
    """
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in _BLOCK.finditer(text):
        call = _call(match.group(1).strip())
        if call is None:
            continue
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(call)
    if not calls:
        return text, []
    kept.append(text[last:])
    content = "".join(kept).strip()
    return (content or None), calls
