"""Responses items: input items checked and stored in OpenAI's item shapes, a conversation of items as
chat messages, and the output items of a generated answer. Pure Python.

Input items openft reads: messages (``user``, ``system``, ``developer`` and ``assistant`` roles; text
content as a string or ``input_text`` parts, and ``output_text``/``refusal`` parts for the assistant),
``function_call`` and ``function_call_output`` items. Images, files, audio, item references and the items
of built-in tools are refused with a 400 naming ``input[i]``.
"""

from __future__ import annotations

import secrets
from typing import Any

from openft.errors import InvalidRequest
from openft.serving.tool_calls import parse_tool_calls

_MESSAGE_ROLES = ("user", "system", "developer", "assistant")


def new_item_id(prefix: str) -> str:
    """``{prefix}_`` and 48 hex digits, the shape of OpenAI's response and item ids."""
    return f"{prefix}_{secrets.token_hex(24)}"


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string.", param=param)
    return value


def _input_parts(content: Any, param: str) -> list[dict[str, Any]]:
    """A user, system or developer message's content as ``input_text`` parts."""
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or a list of content parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "input_text":
            raise InvalidRequest(
                f"Content parts of type '{kind}' are not supported: openft's models read text (input_text) only.",
                param=f"{param}[{j}]",
            )
        parts.append({"type": "input_text", "text": _text(part.get("text"), f"{param}[{j}].text")})
    return parts


def _output_parts(content: Any, param: str) -> list[dict[str, Any]]:
    """An assistant message's content as ``output_text`` (and ``refusal``) parts."""
    if isinstance(content, str):
        return [output_text_part(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or a list of content parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("output_text", "input_text"):
            parts.append(output_text_part(_text(part.get("text"), f"{param}[{j}].text")))
        elif kind == "refusal":
            parts.append({"type": "refusal", "refusal": _text(part.get("refusal"), f"{param}[{j}].refusal")})
        else:
            raise InvalidRequest(
                f"Assistant content parts of type '{kind}' are not supported; use output_text.", param=f"{param}[{j}]"
            )
    return parts


def output_text_part(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise InvalidRequest(
            f"Invalid value for role: {role!r}; expected one of {_MESSAGE_ROLES}.", param=f"{param}.role"
        )
    content = item.get("content")
    if role == "assistant":
        parts = _output_parts(content, f"{param}.content")
        return {
            "id": _item_id(item, "msg", param),
            "type": "message",
            "role": role,
            "status": "completed",
            "content": parts,
        }
    parts = _input_parts(content, f"{param}.content")
    return {
        "id": _item_id(item, "msg", param),
        "type": "message",
        "role": role,
        "status": "completed",
        "content": parts,
    }


def _item_id(item: dict[str, Any], prefix: str, param: str) -> str:
    given = item.get("id")
    if given is None:
        return new_item_id(prefix)
    if not isinstance(given, str) or not 0 < len(given) <= 64:
        raise InvalidRequest("An item id must be a string of at most 64 characters.", param=f"{param}.id")
    return given


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    return {
        "id": _item_id(item, "fc", param),
        "type": "function_call",
        "status": "completed",
        "call_id": _text(item.get("call_id"), f"{param}.call_id"),
        "name": _text(item.get("name"), f"{param}.name"),
        "arguments": _text(item.get("arguments"), f"{param}.arguments"),
    }


def _function_call_output(item: dict[str, Any], param: str) -> dict[str, Any]:
    output = item.get("output")
    if not isinstance(output, str):
        output = _input_parts(output, f"{param}.output")
    return {
        "id": _item_id(item, "fco", param),
        "type": "function_call_output",
        "status": "completed",
        "call_id": _text(item.get("call_id"), f"{param}.call_id"),
        "output": output,
    }


def input_items(value: str | list[Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as stored items, each with an id (minted where the client sent none).

    Raises:
        InvalidRequest: an item openft cannot read, named ``input[i]``.
    """
    if isinstance(value, str):
        return [_message({"role": "user", "content": value}, "input")]
    if not value:
        raise InvalidRequest("input must not be an empty list.", param="input")
    items = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{param} must be an object.", param=param)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            items.append(_message(item, param))
        elif kind == "function_call":
            items.append(_function_call(item, param))
        elif kind == "function_call_output":
            items.append(_function_call_output(item, param))
        elif kind == "item_reference":
            raise InvalidRequest(
                "Item references are not supported; send the item itself or continue with previous_response_id.",
                param=f"{param}.type",
            )
        else:
            raise InvalidRequest(f"Input items of type '{kind}' are not supported.", param=f"{param}.type")
    return items


def _joined_text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", p.get("refusal", "")) for p in content)


def chat_messages(items: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """A conversation of stored items as chat messages, ``instructions`` first as a system message.

    Function calls join the assistant message just before them (one assistant turn with its text and
    ``tool_calls``); each output becomes a ``tool`` message with its call's id and name.

    Raises:
        InvalidRequest: a ``function_call_output`` answers no earlier ``function_call``.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    call_names: dict[str, str] = {}
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": _joined_text(item["content"])})
        elif kind == "function_call":
            call_names[item["call_id"]] = item["name"]
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            name = call_names.get(item["call_id"])
            if name is None:
                raise InvalidRequest(
                    f"No tool call found for function call output with call_id {item['call_id']}.", param="input"
                )
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "name": name, "content": _joined_text(item["output"])}
            )
    return messages


def output_items(
    text: str,
    *,
    incomplete: bool,
    tools_requested: bool,
    logprobs: list[dict[str, Any]] | None = None,
    parallel_calls: bool = True,
) -> list[dict[str, Any]]:
    """The output items of one generated answer: an assistant message with its text (unless the answer
    was only tool calls), then one ``function_call`` item per ``<tool_call>`` block when tools were
    offered (only the first without ``parallel_calls``). ``incomplete``: the answer hit
    ``max_output_tokens``."""
    content, calls = parse_tool_calls(text) if tools_requested else (text, [])
    calls = calls if parallel_calls else calls[:1]
    items: list[dict[str, Any]] = []
    if content is not None or not calls:
        part = output_text_part(content or "", logprobs if not calls else None)
        status = "incomplete" if incomplete else "completed"
        items.append(
            {"id": new_item_id("msg"), "type": "message", "role": "assistant", "status": status, "content": [part]}
        )
    for call in calls:
        items.append(
            {
                "id": new_item_id("fc"),
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            }
        )
    return items


def check_unique_ids(context: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Raise InvalidRequest when an item of ``new`` repeats the id of an item already in the conversation
    (or in ``new``)."""
    seen = {item["id"] for item in context}
    for i, item in enumerate(new):
        if item["id"] in seen:
            raise InvalidRequest(
                f"Duplicate item found with id {item['id']}. Remove duplicate items from your input and try again.",
                param=f"input[{i}].id",
            )
        seen.add(item["id"])
