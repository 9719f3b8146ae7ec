"""Render ``{{ item.* }}`` and ``{{ sample.* }}`` templates, and build the ``sample`` namespace.

Paths are JSON-path-like: ``{{ item.answer }}``, ``{{ sample.output_json.steps[0].result }}``,
``{{ sample.output_tools[0].function.name }}``. Strings render as they are, other values as JSON.
A path that does not resolve raises ``TemplateError`` (the grader reports ``invalid_variable_error``).
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[\s*(-?\d+|\"[^\"]*\"|'[^']*')\s*\]")
NAMESPACES = ("item", "sample")


class TemplateError(ValueError):
    """A template names a variable that the item or the sample does not have."""


def make_sample(output_text: str, *, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``sample`` namespace for one model output.

    ``output_json`` is the parsed text when it is a JSON object or array, else None; ``choices``
    mirrors a chat completion's choices, so ``{{sample.choices[0].message.content}}`` works too.
    """
    output_json: Any = None
    stripped = output_text.strip()
    if stripped[:1] in ("{", "["):
        try:
            output_json = json.loads(stripped)
        except ValueError:
            output_json = None
    message: dict[str, Any] = {"role": "assistant", "content": output_text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "output_text": output_text,
        "output_json": output_json,
        "output_tools": tool_calls or [],
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "output_audio": None,
    }


def lookup(path: str, namespaces: dict[str, Any]) -> Any:
    """The value at ``path`` (e.g. ``item.answers[0]``) in ``namespaces``.

    Raises:
        TemplateError: the path is malformed, names an unknown namespace or does not resolve.
    """
    pos = 0
    value: Any = namespaces
    first = True
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None or (first and match.group(1) is None):
            raise TemplateError(f"Malformed template variable '{path}'.")
        key = match.group(1)
        if first and key not in NAMESPACES:
            raise TemplateError(f"Unknown template namespace in '{path}'; use item or sample.")
        first = False
        pos = match.end()
        if key is None:
            index = match.group(2)
            key = index[1:-1] if index[0] in "\"'" else int(index)
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise TemplateError(f"Template variable '{path}' does not exist in the item or the sample.") from None
    if first:
        raise TemplateError("Empty template variable.")
    return value


def render(template: str, item: dict[str, Any], sample: dict[str, Any] | None) -> str:
    """``template`` with every ``{{ path }}`` replaced by its value.

    Raises:
        TemplateError: a placeholder does not resolve.
    """
    namespaces = {"item": item, "sample": sample if sample is not None else {}}

    def substitute(match: re.Match[str]) -> str:
        value = lookup(match.group(1), namespaces)
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)

    return _PLACEHOLDER.sub(substitute, template)
