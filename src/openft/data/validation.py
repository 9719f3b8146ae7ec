"""Validate a fine-tuning JSONL file line by line, streaming, with the standard library only.

Used by the worker in a job's ``validating_files`` phase and by ``openft files validate``. Lines are
read in bounded pieces, so hostile input (a 1 GB line, NUL bytes, deep nesting) yields an error
instead of exhausting memory or the stack. Each line gets at most one error (its first problem);
errors come in line order, and the example-count error, if any, comes last.

Error codes (``FileReport.errors``), by what they catch:

* the file or line: ``empty_file`` (no non-blank line), ``line_too_long`` (over ``max_line_bytes``),
  ``nul_byte``, ``invalid_utf8`` (and unpaired surrogate escapes), ``invalid_json`` (NaN/Infinity and
  over-long integers included),
  ``nesting_too_deep`` (over 64 levels), ``not_a_dict`` (JSON, but not an object);
* the example: ``mixed_formats`` (chat and prompt/completion lines in one file),
  ``invalid_prompt_completion``, ``missing_messages_list``, ``example_missing_assistant_message``
  (supervised), ``invalid_dpo_input`` (no ``input`` object, or it ends with an assistant turn),
  ``invalid_dpo_output`` (not a list of exactly one assistant message), ``invalid_tools`` (``tools``,
  ``functions``, ``parallel_tool_calls``);
* a message: ``invalid_message`` (not an object; non-string ``name``/``tool_call_id``/``refusal``),
  ``message_missing_key`` (``role``; ``tool_call_id`` on tool, ``name`` on function messages),
  ``unrecognized_role``, ``message_unrecognized_key``, ``missing_content``, ``invalid_content`` (not a
  string or a list of text parts), ``unsupported_content`` (image/audio/file parts, ``audio``),
  ``invalid_weight`` (not 0 or 1, or not on an assistant message), ``invalid_tool_calls``,
  ``invalid_function_call``;
* the count: ``invalid_n_examples`` ("Training file has 7 example(s), but must have at least 10 examples"),
  ``too_many_examples`` (over ``max_examples``).

Warning codes (``FileReport.warnings``, one summary each): ``missing_user_message``,
``missing_system_message``, ``no_trainable_assistant_message`` (every assistant turn has weight 0),
``identical_dpo_outputs``.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

METHODS = ("supervised", "dpo", "reinforcement")
PURPOSES = ("training", "validation")
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64

_DRAIN_CHUNK = 1024 * 1024
_ALL_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# The spec lists developer only for reinforcement; we accept it everywhere because chat templates treat it
# like system. Reinforcement has no legacy function role, and system is tolerated there.
_ROLES = {"supervised": _ALL_ROLES, "dpo": _ALL_ROLES, "reinforcement": _ALL_ROLES[:5]}
# Allowed keys per role, from the spec's ChatCompletionRequest*Message schemas (+ weight: FineTune assistant).
_KEYS = {
    **dict.fromkeys(("system", "developer", "user", "function"), ("role", "content", "name")),
    "assistant": ("role", "content", "name", "weight", "tool_calls", "function_call", "refusal", "audio"),
    "tool": ("role", "content", "tool_call_id"),
}
_FUNCTION_KEYS = ("name", "description", "parameters", "strict")
_UNSUPPORTED_PARTS = {"image_url": "image", "input_audio": "audio", "file": "file", "refusal": "refusal"}
_TOOL_CALL = '{"id": str, "type": "function", "function": {"name": str, "arguments": str}}'
_TOOL = '{"type": "function", "function": {"name": str, "description"?: str, "parameters"?: object}}'
_WARNINGS = {
    "missing_user_message": "have no user message",
    "missing_system_message": "have no system or developer message",
    "no_trainable_assistant_message": "have only weight-0 assistant messages (nothing to train on)",
    "identical_dpo_outputs": "have identical preferred and non-preferred outputs",
}


@dataclass(frozen=True)
class FileProblem:
    """One error or warning; ``message`` names the line so a user can fix the file."""

    code: str
    message: str
    line: int | None = None
    """1-based line number; None for a whole-file problem."""


@dataclass(frozen=True)
class FileReport:
    """The outcome of validating one file."""

    n_examples: int
    """Non-blank lines, valid or not."""
    errors: list[FileProblem] = field(default_factory=list)
    warnings: list[FileProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file has no errors (warnings allowed)."""
        return not self.errors


def validate_file(
    path: str | os.PathLike[str],
    method: str = "supervised",
    *,
    purpose: str = "training",
    min_examples: int = 10,
    max_errors: int = 20,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_examples: int | None = None,
    progress: Callable[[], None] | None = None,
) -> FileReport:
    """Validate a JSONL file for ``method`` ("supervised", "dpo" or "reinforcement"), streaming.

    ``min_examples`` applies when ``purpose`` is "training"; a "validation" file needs one example.
    After ``max_errors`` errors, lines are only counted, no longer parsed. ``progress`` is called
    before each line; whatever it raises stops the validation (a worker's lost claim on the job).
    Raises ValueError for an unknown method or purpose, OSError when the file cannot be read.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; expected one of {', '.join(PURPOSES)}")
    errors: list[FileProblem] = []
    tally = _Tally()
    n_examples = 0
    with open(path, "rb") as f:
        for line_no, raw in _read_lines(f, max_line_bytes):
            if progress is not None:
                progress()
            if raw is not None and not raw.strip():
                continue
            n_examples += 1
            if len(errors) >= max_errors:
                continue
            tally.line = line_no
            try:
                if raw is None:
                    raise _Bad("line_too_long", f"Line {line_no} is longer than {max_line_bytes} bytes.")
                _check_example(_parse(raw, line_no), method, tally)
            except _Bad as bad:
                errors.append(FileProblem(bad.code, bad.message, line_no))
    kind = purpose.capitalize()
    minimum = min_examples if purpose == "training" else 1
    if n_examples == 0:
        errors.append(FileProblem("empty_file", f"{kind} file is empty; it has no examples."))
    elif n_examples < minimum and len(errors) < max_errors:
        message = f"{kind} file has {n_examples} example(s), but must have at least {minimum} examples"
        errors.append(FileProblem("invalid_n_examples", message))
    elif max_examples is not None and n_examples > max_examples:
        message = f"{kind} file has {n_examples} examples, but this server accepts at most {max_examples}"
        errors.append(FileProblem("too_many_examples", message))
    return FileReport(n_examples=n_examples, errors=errors, warnings=tally.warnings())


def first_error_message(report: FileReport, *, file_kind: str = "training") -> FileProblem | None:
    """The report's first error phrased for a failed job's ``error``, or None when the file is valid.

    A format error reads like OpenAI's: "The job failed due to a file format error in the training
    file. Invalid file format. Line 7: ..."; the example-count error keeps its own message.
    """
    if not report.errors:
        return None
    first = report.errors[0]
    if first.code in ("invalid_n_examples", "too_many_examples"):
        return first
    prefix = f"The job failed due to a file format error in the {file_kind} file. Invalid file format."
    return FileProblem(first.code, f"{prefix} {first.message}", first.line)


class _Bad(Exception):
    """The first problem of a line; raised deep in the checks, caught once per line."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _require(ok: object, code: str, message: str) -> None:
    if not ok:
        raise _Bad(code, message)


def _short(value: object) -> str:
    # A hostile line can put megabytes where a role name belongs; keep messages readable.
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _read_lines(f: IO[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield (1-based line number, bytes without the newline), or None for a line over the limit."""
    line_no = 0
    while raw := f.readline(max_line_bytes + 1):
        line_no += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            # Skip the rest of the line in bounded pieces; a 1 GB line never sits in memory.
            while raw and not raw.endswith(b"\n"):
                raw = f.readline(_DRAIN_CHUNK)
            yield line_no, None
        else:
            yield line_no, raw.rstrip(b"\r\n")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _parse(raw: bytes, line_no: int) -> dict[str, Any]:
    at = f"Line {line_no}"
    deep = f"{at} nests JSON deeper than {MAX_DEPTH} levels."
    if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]  # editors on Windows add one; harmless
    nul = raw.find(b"\0")
    _require(nul < 0, "nul_byte", f"{at} contains a NUL byte at position {nul}.")
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Bad("invalid_utf8", f"{at} is not valid UTF-8 (bad byte at position {exc.start}).") from None
    except RecursionError:
        raise _Bad("nesting_too_deep", deep) from None
    except json.JSONDecodeError as exc:
        raise _Bad("invalid_json", f"{at} is not valid JSON: {exc.msg} (column {exc.colno}).") from None
    except ValueError as exc:  # NaN/Infinity, integers over Python's digit limit
        raise _Bad("invalid_json", f"{at} is not valid JSON: {exc}.") from None
    # Each level needs a bracket, so a line with few brackets cannot be too deep: skip the walk.
    few = raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH
    _require(few or not _too_deep(value), "nesting_too_deep", deep)
    # A \uD800-\uDFFF escape parses, but a lone one is no character: no tokenizer can encode it.
    if re.search(rb"\\u[dD][89a-fA-F]", raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            lone = ascii(exc.object[exc.start])
            raise _Bad("invalid_utf8", f"{at} contains an unpaired surrogate escape ({lone}).") from None
    jsonl = "Expected file to have JSONL format, where every line is a JSON dictionary."
    if not isinstance(value, dict):
        raise _Bad("not_a_dict", f"{jsonl} {at} is not a dictionary.")
    return value


def _too_deep(value: Any) -> bool:
    # Iterative, so checking depth cannot itself hit the recursion limit.
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class _Tally:
    """Per-file state: the current line, the first line format seen, the counts behind the warnings."""

    def __init__(self) -> None:
        self.line = 0
        self.fmt: str | None = None
        # code -> (count, first few lines); bounded, whatever the file's size.
        self.seen: dict[str, tuple[int, list[int]]] = {}

    def note(self, code: str) -> None:
        count, lines = self.seen.get(code, (0, []))
        self.seen[code] = (count + 1, lines if len(lines) >= 5 else [*lines, self.line])

    def warnings(self) -> list[FileProblem]:
        found = []
        for code, what in _WARNINGS.items():
            if code in self.seen:
                count, lines = self.seen[code]
                shown = ", ".join(map(str, lines)) + (", ..." if count > len(lines) else "")
                found.append(FileProblem(code, f"{count} example(s) {what} (lines {shown}).", lines[0]))
        return found


def _check_example(ex: dict[str, Any], method: str, tally: _Tally) -> None:
    at = f"Line {tally.line}:"
    if method == "dpo":
        _check_dpo(ex, at, tally)
        return
    legacy = method == "supervised" and "messages" not in ex and ("prompt" in ex or "completion" in ex)
    if method == "supervised" and (legacy or "messages" in ex):
        # A recipe formats a whole file one way; mixing chat and prompt/completion lines is a mistake.
        fmt = "prompt/completion" if legacy else "chat"
        tally.fmt = tally.fmt or fmt
        _require(tally.fmt == fmt, "mixed_formats", f"{at} example is {fmt}, earlier ones {tally.fmt}.")
    if legacy:
        for key in ("prompt", "completion"):
            ok = isinstance(ex.get(key), str)
            _require(ok, "invalid_prompt_completion", f"{at} '{key}' is not a string.")
        return
    roles = _check_messages(ex.get("messages"), "messages", at, _ROLES[method], tally)
    _check_tools(ex, at, method)
    if method == "supervised":
        missing = f"{at} example has no assistant message; each example needs at least one to train on."
        _require("assistant" in roles, "example_missing_assistant_message", missing)
        if not any(m.get("weight", 1) for m in ex["messages"] if m["role"] == "assistant"):
            tally.note("no_trainable_assistant_message")


def _check_dpo(ex: dict[str, Any], at: str, tally: _Tally) -> None:
    inp: Any = ex.get("input")
    _require(isinstance(inp, dict), "invalid_dpo_input", f"{at} 'input' must be an object with 'messages'.")
    messages = inp.get("messages")
    _check_messages(messages, "input.messages", at, _ROLES["dpo"], tally, noun="input message")
    last = f"{at} input.messages ends with an assistant message; the outputs are the final assistant turn."
    _require(messages[-1]["role"] != "assistant", "invalid_dpo_input", last)
    _check_tools(inp, f"{at} input", "dpo")
    outputs = []
    for key in ("preferred_output", "non_preferred_output"):
        out: Any = ex.get(key)
        one = isinstance(out, list) and len(out) == 1 and isinstance(out[0], dict)
        _require(one, "invalid_dpo_output", f"{at} '{key}' must be a list of exactly one assistant message.")
        role = out[0].get("role")
        _require(role == "assistant", "invalid_dpo_output", f"{at} '{key}' has role {_short(role)}, not assistant.")
        _check_message(out[0], f"{at} {key} message 1", ("assistant",), allow_weight=False)
        outputs.append(out[0])
    if outputs[0] == outputs[1]:
        tally.note("identical_dpo_outputs")


def _check_messages(
    messages: Any, key: str, at: str, roles: tuple[str, ...], tally: _Tally, noun: str = "message"
) -> set[str]:
    """Check a messages list; return the roles in it, and note the warnings."""
    problem = "is missing" if messages is None else "must be a non-empty list of messages"
    _require(isinstance(messages, list) and messages, "missing_messages_list", f"{at} '{key}' {problem}.")
    seen = {_check_message(msg, f"{at} {noun} {i}", roles) for i, msg in enumerate(messages, start=1)}
    if "user" not in seen:
        tally.note("missing_user_message")
    if not seen & {"system", "developer"}:
        tally.note("missing_system_message")
    return seen


def _check_message(msg: Any, at: str, roles: tuple[str, ...], *, allow_weight: bool = True) -> str:
    """Check one message and return its role; ``at`` is e.g. "Line 7: message 2" (1-based)."""
    _require(isinstance(msg, dict), "invalid_message", f"{at} is not a JSON object.")
    _require("role" in msg, "message_missing_key", f"{at} has no 'role'.")
    role = msg["role"]
    if role not in roles:
        raise _Bad("unrecognized_role", f"{at} has unknown role {_short(role)}; expected one of {', '.join(roles)}.")
    if "weight" in msg:
        weight = msg["weight"]
        rule = "only assistant messages take one" if allow_weight else "outputs take none"
        ok = role == "assistant" and allow_weight
        _require(ok, "invalid_weight", f"{at} ({role}) has 'weight'; {rule}.")
        ok = type(weight) is int and weight in (0, 1)  # the spec's enum is integers; true/1.0 are mistakes
        _require(ok, "invalid_weight", f"{at} has weight {_short(weight)}; it must be 0 or 1.")
    keys = _KEYS[role] if allow_weight else tuple(k for k in _KEYS[role] if k != "weight")
    unknown = [key for key in msg if key not in keys]
    if unknown:
        allowed = ", ".join(keys)
        raise _Bad(
            "message_unrecognized_key",
            f"{at} ({role}) has unknown key {_short(unknown[0])}; allowed: {allowed}.",
        )
    _require("audio" not in msg, "unsupported_content", f"{at} has 'audio'; audio is not supported.")
    for key in ("name", "tool_call_id", "refusal"):
        ok = key not in msg or isinstance(msg[key], str) or (key == "refusal" and msg[key] is None)
        _require(ok, "invalid_message", f"{at} has a non-string {key!r}.")
    _require(role != "function" or "name" in msg, "message_missing_key", f"{at} (function) has no 'name'.")
    ok = role != "tool" or "tool_call_id" in msg
    _require(ok, "message_missing_key", f"{at} (tool) has no 'tool_call_id'.")
    calls = _check_calls(msg, at) if role == "assistant" else False
    _check_content(msg.get("content"), role, at, optional=calls or role == "function")
    return str(role)


def _check_calls(msg: dict[str, Any], at: str) -> bool:
    """Check an assistant message's tool_calls/function_call; return whether it makes a call."""
    calls = msg.get("tool_calls")
    ok = calls is None or isinstance(calls, list)
    _require(ok, "invalid_tool_calls", f"{at} 'tool_calls' is not a list.")
    for i, call in enumerate(calls or [], start=1):
        ok = isinstance(call, dict) and isinstance(call.get("id"), str) and call.get("type") == "function"
        ok = ok and _is_call(call.get("function"))
        _require(ok, "invalid_tool_calls", f"{at} tool call {i} must be {_TOOL_CALL}.")
    fcall = msg.get("function_call")
    shape = '{"name": str, "arguments": str}'
    ok = fcall is None or _is_call(fcall)
    _require(ok, "invalid_function_call", f"{at} function_call must be {shape}.")
    return bool(calls) or fcall is not None


def _is_call(fn: Any) -> bool:
    return isinstance(fn, dict) and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str)


def _check_content(content: Any, role: str, at: str, *, optional: bool) -> None:
    if content is None or content == []:
        hint = " (only an assistant message with tool_calls may omit it)" if role == "assistant" else ""
        _require(optional, "missing_content", f"{at} ({role}) has no content{hint}.")
        return
    # An empty reply that makes no call leaves the trainer nothing to learn from.
    empty_reply = content == "" and role == "assistant" and not optional
    _require(not empty_reply, "missing_content", f"{at} (assistant) has empty content.")
    if isinstance(content, str):
        return
    wrong = f"{at} content must be a string or a list of text parts, not {type(content).__name__}."
    _require(isinstance(content, list), "invalid_content", wrong)
    for i, part in enumerate(content, start=1):
        kind: Any = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        what = _UNSUPPORTED_PARTS.get(kind)
        unsupported = f"{at} content part {i} is {_short(kind)}: {what} content is not supported; use text."
        _require(what is None, "unsupported_content", unsupported)
        raise _Bad("invalid_content", f'{at} content part {i} must be {{"type": "text", "text": str}}.')


def _check_tools(obj: dict[str, Any], at: str, method: str) -> None:
    """Check ``tools`` and, where the method reserves them, ``parallel_tool_calls`` and ``functions``."""
    tools = obj.get("tools")
    _require(tools is None or isinstance(tools, list), "invalid_tools", f"{at} 'tools' is not a list.")
    for i, tool in enumerate(tools or [], start=1):
        ok = isinstance(tool, dict) and tool.get("type") == "function" and _is_function(tool.get("function"))
        _require(ok, "invalid_tools", f"{at} tool {i} must be {_TOOL}.")
    if method == "reinforcement":
        return  # only messages and tools are reserved there; other keys are data for the graders
    parallel = obj.get("parallel_tool_calls", True)
    ok = isinstance(parallel, bool)
    _require(ok, "invalid_tools", f"{at} 'parallel_tool_calls' must be true or false.")
    functions = obj.get("functions")
    if method == "supervised" and functions is not None:
        ok = isinstance(functions, list) and 1 <= len(functions) <= 128 and all(map(_is_function, functions))
        _require(ok, "invalid_tools", f"{at} 'functions' must be a list of 1 to 128 function definitions.")


def _is_function(fn: Any) -> bool:
    return (
        isinstance(fn, dict)
        and isinstance(fn.get("name"), str)
        and all(key in _FUNCTION_KEYS for key in fn)
        and isinstance(fn.get("description", ""), str)
        and isinstance(fn.get("parameters", {}), dict)
        and isinstance(fn.get("strict", False), bool)
    )
