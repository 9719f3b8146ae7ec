"""Tools for models whose chat template has no place for them.

Many small instruct models (SmolLM2 among them) ship a chat template that ignores ``tools`` and an
assistant's ``tool_calls``: rendered as they are, a tool-calling training example becomes an empty
assistant turn (nothing to learn) and a served request's tool definitions never reach the model. For such
a template openft writes tools in the format its serving already parses (``serving/tool_calls.py``,
Hermes style, as Qwen's and NousResearch's templates do): the definitions in the system message inside
``<tools></tools>``, each call as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in the
assistant's content, and each tool result as a user turn inside ``<tool_response></tool_response>``.

Training, token estimates, reinforcement rollouts and serving all render through :func:`for_template`,
so a model is served with the very text it was trained on. A template that mentions ``tools`` is
trusted to render them itself and gets the messages unchanged.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

TOOLS_PREAMBLE = (
    "You may call one or more functions to assist with the user query. The functions you may call are "
    "listed within <tools></tools>:\n<tools>\n{tools}\n</tools>\n"
    "To call a function, answer with one JSON object per call within <tool_call></tool_call>:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def renders_tools(template: str | None) -> bool:
    """Whether ``template`` has a place for tool definitions (then it is trusted with calls too)."""
    return template is not None and "tools" in template


def for_template(
    template: str | None, messages: list[dict[str, Any]], tools: list[Any] | None
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """The ``(messages, tools)`` to render through ``template``: unchanged where it renders tools or
    nothing needs them, else with tools, calls and results written into the messages (``tools`` None)."""
    uses_tools = bool(tools) or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)
    if renders_tools(template) or not uses_tools:
        return messages, tools
    out = [_rewritten(m) for m in messages]
    if tools:
        preamble = TOOLS_PREAMBLE.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{preamble}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return out, None


def _rewritten(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{_text(message.get('content'))}\n</tool_response>"}
    calls = message.get("tool_calls") if role == "assistant" else None
    if not calls:
        return message
    blocks = [_call_block(call) for call in calls]
    content = "\n".join(part for part in [_text(message.get("content")), *blocks] if part)
    return {key: value for key, value in message.items() if key != "tool_calls"} | {"content": content}


def _call_block(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        # Malformed arguments stay the string they are; validation reports them where it must.
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    body: dict[str, Any] = {"name": function.get("name"), "arguments": arguments if arguments is not None else {}}
    return f"<tool_call>\n{json.dumps(body, ensure_ascii=False)}\n</tool_call>"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""
