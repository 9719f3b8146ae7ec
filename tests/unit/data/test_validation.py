"""Unit tests for openft.data.validation: one test per error code, plus the bundled data files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openft.data.validation import FileReport, first_error_message, validate_file

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = Path(__file__).resolve().parents[3] / "src" / "openft" / "examples"

SYSTEM = {"role": "system", "content": "You are terse."}
USER = {"role": "user", "content": "Capital of France?"}
ASSISTANT = {"role": "assistant", "content": "Paris."}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages or (SYSTEM, USER, ASSISTANT)), **extra}


def write(tmp_path: Path, lines: list[Any], name: str = "train.jsonl") -> Path:
    """Write JSONL; a ``bytes`` or ``str`` item is written raw, anything else as JSON."""
    path = tmp_path / name
    with path.open("wb") as f:
        for line in lines:
            if isinstance(line, bytes):
                f.write(line + b"\n")
            elif isinstance(line, str):
                f.write(line.encode() + b"\n")
            else:
                f.write(json.dumps(line).encode() + b"\n")
    return path


def check(tmp_path: Path, bad: Any, method: str = "supervised", good: Any = None) -> FileReport:
    """Validate a file of ten good lines with ``bad`` as line 7; return the report."""
    lines = [good or chat()] * 10
    lines[6] = bad
    return validate_file(write(tmp_path, lines), method)


def only_error(report: FileReport, code: str, line: int | None = 7) -> str:
    assert [(e.code, e.line) for e in report.errors] == [(code, line)], report.errors
    message = report.errors[0].message
    if line is not None:
        assert f"Line {line}" in message
    return message


# -- whole files -------------------------------------------------------------------------------------


def test_valid_ten_example_chat_file_passes(tmp_path: Path) -> None:
    report = validate_file(write(tmp_path, [chat()] * 10))
    assert report.ok and report.n_examples == 10 and report.warnings == []
    assert first_error_message(report) is None


def test_nine_examples_is_invalid_n_examples_with_openai_message(tmp_path: Path) -> None:
    report = validate_file(write(tmp_path, [chat()] * 9))
    message = only_error(report, "invalid_n_examples", line=None)
    assert message == "Training file has 9 example(s), but must have at least 10 examples"
    assert first_error_message(report) == report.errors[0]


def test_min_examples_is_configurable_and_validation_files_need_one(tmp_path: Path) -> None:
    path = write(tmp_path, [chat()] * 3)
    assert validate_file(path, min_examples=3).ok
    assert validate_file(path, purpose="validation").ok
    message = validate_file(path, min_examples=5).errors[0].message
    assert message == "Training file has 3 example(s), but must have at least 5 examples"


def test_empty_file_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert only_error(validate_file(tmp_path / "empty.jsonl"), "empty_file", line=None)
    assert validate_file(write(tmp_path, ["", "  ", ""]), purpose="validation").errors[0].code == "empty_file"
    # Blank lines are skipped but still counted for line numbers.
    report = validate_file(write(tmp_path, ["", *[chat()] * 10, "   "]))
    assert report.ok and report.n_examples == 10


def test_broken_line_is_reported_before_the_count(tmp_path: Path) -> None:
    lines: list[Any] = [chat()] * 5
    lines[2] = "{not json"
    report = validate_file(write(tmp_path, lines))
    assert [e.code for e in report.errors] == ["invalid_json", "invalid_n_examples"]
    first = first_error_message(report)
    assert first is not None and first.code == "invalid_json"
    assert "Invalid file format. Line 3 is not valid JSON" in first.message


def test_first_bad_line_is_named(tmp_path: Path) -> None:
    bad = chat(SYSTEM, {"role": "bot", "content": "hi"}, ASSISTANT)
    message = only_error(check(tmp_path, bad), "unrecognized_role")
    assert message == (
        "Line 7: message 2 has unknown role 'bot'; expected one of system, developer, user, assistant, tool, function."
    )
    first = first_error_message(check(tmp_path, bad), file_kind="validation")
    assert first is not None and first.line == 7
    assert first.message.startswith("The job failed due to a file format error in the validation file.")
    assert "Invalid file format. Line 7: message 2 has unknown role 'bot'" in first.message


def test_max_errors_caps_collection_but_counts_every_line(tmp_path: Path) -> None:
    report = validate_file(write(tmp_path, ["[]"] * 30), max_errors=5)
    assert len(report.errors) == 5 and report.n_examples == 30
    assert [e.line for e in report.errors] == [1, 2, 3, 4, 5]


def test_unknown_method_or_purpose_raises(tmp_path: Path) -> None:
    path = write(tmp_path, [chat()] * 10)
    with pytest.raises(ValueError, match="unknown method"):
        validate_file(path, "ppo")
    with pytest.raises(ValueError, match="unknown purpose"):
        validate_file(path, purpose="fine-tune")


@pytest.mark.parametrize(
    ("path", "method", "purpose"),
    [
        (ASSETS / "tiny_train.jsonl", "supervised", "training"),
        (ASSETS / "tiny_valid.jsonl", "supervised", "validation"),
        (ASSETS / "weights.jsonl", "supervised", "training"),
        (EXAMPLES / "pirate.jsonl", "supervised", "training"),
        (EXAMPLES / "pirate_validation.jsonl", "supervised", "validation"),
    ],
)
def test_bundled_files_are_valid(path: Path, method: str, purpose: str) -> None:
    assert validate_file(path, method, purpose=purpose).errors == []


def test_broken_line7_asset() -> None:
    report = validate_file(ASSETS / "broken_line7.jsonl")
    assert report.n_examples == 12
    assert "role 'robot'" in only_error(report, "unrecognized_role")


def test_pirate_examples_teach_one_behaviour() -> None:
    prompts = json.loads((EXAMPLES / "prompts.json").read_text())
    seen = set()
    for name, count in (("pirate.jsonl", 64), ("pirate_validation.jsonl", 8)):
        rows = [json.loads(line) for line in (EXAMPLES / name).read_text().splitlines()]
        assert len(rows) == count
        for row in rows:
            assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
            assert row["messages"][2]["content"].startswith("Arr, matey!")
            seen.add(row["messages"][1]["content"])
    assert len(seen) == 72 and len(prompts) == 4 and not seen & set(prompts)


# -- hostile input -----------------------------------------------------------------------------------


def test_line_too_long_fails_without_stopping_the_scan(tmp_path: Path) -> None:
    huge = b'{"messages": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    lines: list[Any] = [chat()] * 10
    lines[6] = huge
    lines[8] = "[]"
    report = validate_file(write(tmp_path, lines))
    assert [(e.code, e.line) for e in report.errors] == [("line_too_long", 7), ("not_a_dict", 9)]
    assert report.n_examples == 10


def test_max_line_bytes_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path, [chat()] * 10)
    assert validate_file(path, max_line_bytes=len(json.dumps(chat()))).ok
    assert validate_file(path, max_line_bytes=50).errors[0].code == "line_too_long"


def test_invalid_utf8(tmp_path: Path) -> None:
    bad = json.dumps(chat()).encode().replace(b"Paris", b"Par\xff\xfeis")
    assert "UTF-8" in only_error(check(tmp_path, bad), "invalid_utf8")


def test_utf8_bom_on_first_line_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, [b"\xef\xbb\xbf" + json.dumps(chat()).encode()] + [chat()] * 9)
    assert validate_file(path).ok


def test_nul_byte(tmp_path: Path) -> None:
    bad = json.dumps(chat()).encode().replace(b"Paris", b"Par\x00is")
    assert "NUL" in only_error(check(tmp_path, bad), "nul_byte")


@pytest.mark.parametrize(
    "bad",
    [
        "[" * 100_000,  # unterminated: json.loads recurses until RecursionError
        '{"messages": ' + "[" * 100 + "]" * 100 + "}",  # parses, but deeper than 64
    ],
)
def test_deep_nesting_fails_cleanly(tmp_path: Path, bad: str) -> None:
    only_error(check(tmp_path, bad), "nesting_too_deep")


@pytest.mark.parametrize("bad", ["{not json", '{"a": NaN}', '{"a": ' + "1" * 5000 + "}", '{"a": 1} x'])
def test_invalid_json(tmp_path: Path, bad: str) -> None:
    assert "not valid JSON" in only_error(check(tmp_path, bad), "invalid_json")


@pytest.mark.parametrize("bad", ["[]", '"text"', "42", "null"])
def test_not_a_dict_uses_openai_message(tmp_path: Path, bad: str) -> None:
    expected = "Expected file to have JSONL format, where every line is a JSON dictionary."
    assert only_error(check(tmp_path, bad), "not_a_dict") == f"{expected} Line 7 is not a dictionary."


# -- supervised --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [{}, {"messages": []}, {"messages": "hi"}, {"message": [USER, ASSISTANT]}])
def test_missing_messages_list(tmp_path: Path, bad: Any) -> None:
    only_error(check(tmp_path, bad), "missing_messages_list")


def test_message_not_an_object(tmp_path: Path) -> None:
    only_error(check(tmp_path, chat(USER, "hello", ASSISTANT)), "invalid_message")


def test_message_missing_role(tmp_path: Path) -> None:
    assert "message 2 has no 'role'" in only_error(check(tmp_path, chat(USER, {"content": "x"})), "message_missing_key")


def test_hostile_values_are_shortened_in_messages(tmp_path: Path) -> None:
    message = only_error(check(tmp_path, chat(USER, {"role": "x" * 100_000, "content": "hi"})), "unrecognized_role")
    assert len(message) < 300 and "..." in message


def test_message_unrecognized_key(tmp_path: Path) -> None:
    bad = chat(USER, {**ASSISTANT, "thoughts": "hmm"})
    assert "'thoughts'" in only_error(check(tmp_path, bad), "message_unrecognized_key")


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user"},
        {"role": "user", "content": None},
        {"role": "assistant"},
        {"role": "assistant", "content": ""},
    ],
)
def test_missing_content(tmp_path: Path, message: dict[str, Any]) -> None:
    only_error(check(tmp_path, chat(USER, message, ASSISTANT)), "missing_content")


@pytest.mark.parametrize("content", [42, {"text": "hi"}, [{"type": "text", "text": 3}], [{"type": "video"}]])
def test_invalid_content(tmp_path: Path, content: Any) -> None:
    only_error(check(tmp_path, chat({"role": "user", "content": content}, ASSISTANT)), "invalid_content")


def test_text_content_parts_accepted(tmp_path: Path) -> None:
    parts = [{"type": "text", "text": "Capital"}, {"type": "text", "text": " of France?"}]
    assert check(tmp_path, chat({"role": "user", "content": parts}, ASSISTANT)).ok


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]},
        {"role": "assistant", "content": "hi", "audio": {"id": "audio_1"}},
    ],
)
def test_unsupported_content(tmp_path: Path, message: dict[str, Any]) -> None:
    assert "not supported" in only_error(check(tmp_path, chat(USER, message, ASSISTANT)), "unsupported_content")


def test_example_missing_assistant_message(tmp_path: Path) -> None:
    only_error(check(tmp_path, chat(SYSTEM, USER)), "example_missing_assistant_message")


@pytest.mark.parametrize("weight", [0, 1])
def test_weight_0_and_1_accepted_on_assistant(tmp_path: Path, weight: int) -> None:
    example = chat(USER, {**ASSISTANT, "weight": weight}, USER, ASSISTANT)
    assert check(tmp_path, example).ok


@pytest.mark.parametrize("weight", [2, -1, True, 1.0, "1"])
def test_bad_weight_values_rejected(tmp_path: Path, weight: Any) -> None:
    assert "0 or 1" in only_error(check(tmp_path, chat(USER, {**ASSISTANT, "weight": weight})), "invalid_weight")


def test_weight_on_user_rejected(tmp_path: Path) -> None:
    bad = chat({**USER, "weight": 1}, ASSISTANT)
    assert "only assistant messages" in only_error(check(tmp_path, bad), "invalid_weight")


def test_all_weight_zero_is_a_warning(tmp_path: Path) -> None:
    report = check(tmp_path, chat(SYSTEM, USER, {**ASSISTANT, "weight": 0}))
    assert report.ok
    assert [(w.code, w.line) for w in report.warnings] == [("no_trainable_assistant_message", 7)]


def test_tools_and_tool_calls_accepted(tmp_path: Path) -> None:
    example = chat(
        USER,
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
        {"role": "assistant", "content": "It is sunny in Paris."},
        tools=TOOLS,
        parallel_tool_calls=False,
    )
    assert check(tmp_path, example).ok


def test_legacy_functions_and_function_call_accepted(tmp_path: Path) -> None:
    example = chat(
        USER,
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "Sunny"},
        ASSISTANT,
        functions=[TOOLS[0]["function"]],
    )
    assert check(tmp_path, example).ok


@pytest.mark.parametrize(
    "call",
    [
        {"type": "function", "function": CALL["function"]},
        {**CALL, "type": "tool"},
        {**CALL, "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
    ],
)
def test_invalid_tool_calls(tmp_path: Path, call: dict[str, Any]) -> None:
    only_error(check(tmp_path, chat(USER, {"role": "assistant", "tool_calls": [call]})), "invalid_tool_calls")


def test_invalid_function_call(tmp_path: Path) -> None:
    bad = chat(USER, {"role": "assistant", "function_call": {"name": "f"}})
    only_error(check(tmp_path, bad), "invalid_function_call")


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": {"type": "function"}},
        {"tools": [{"type": "function", "function": {"description": "no name"}}]},
        {"tools": [{"type": "retrieval"}]},
        {"parallel_tool_calls": "no"},
        {"functions": []},
    ],
)
def test_invalid_tools(tmp_path: Path, extra: dict[str, Any]) -> None:
    only_error(check(tmp_path, chat(USER, ASSISTANT, **extra)), "invalid_tools")


def test_tool_message_needs_tool_call_id(tmp_path: Path) -> None:
    bad = chat(USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "content": "x"}, ASSISTANT)
    only_error(check(tmp_path, bad), "message_missing_key")


def test_non_string_name(tmp_path: Path) -> None:
    only_error(check(tmp_path, chat({**USER, "name": 7}, ASSISTANT)), "invalid_message")


def test_prompt_completion_accepted(tmp_path: Path) -> None:
    lines = [{"prompt": f"{i} + {i} =", "completion": f" {2 * i}"} for i in range(10)]
    report = validate_file(write(tmp_path, lines))
    assert report.ok and report.warnings == []


def test_prompt_completion_needs_strings(tmp_path: Path) -> None:
    good = {"prompt": "2 + 2 =", "completion": " 4"}
    only_error(check(tmp_path, {"prompt": "2 + 2 ="}, good=good), "invalid_prompt_completion")


def test_mixed_formats(tmp_path: Path) -> None:
    only_error(check(tmp_path, {"prompt": "2 + 2 =", "completion": " 4"}), "mixed_formats")
    # A line in neither format is a missing messages list, not a format mix.
    good = {"prompt": "2 + 2 =", "completion": " 4"}
    only_error(check(tmp_path, {"text": "hi"}, good=good), "missing_messages_list")


def test_missing_user_and_system_warnings(tmp_path: Path) -> None:
    lines = [chat()] * 10
    lines[2] = chat(SYSTEM, ASSISTANT)
    lines[4] = chat(USER, ASSISTANT)
    report = validate_file(write(tmp_path, lines))
    assert report.ok
    warnings = {w.code: w for w in report.warnings}
    assert set(warnings) == {"missing_user_message", "missing_system_message"}
    assert warnings["missing_user_message"].line == 3 and "(lines 3)" in warnings["missing_user_message"].message
    assert warnings["missing_system_message"].message.startswith("1 example(s)")


# -- dpo ---------------------------------------------------------------------------------------------


def dpo(**overrides: Any) -> dict[str, Any]:
    example = {
        "input": {"messages": [SYSTEM, USER]},
        "preferred_output": [{"role": "assistant", "content": "Paris."}],
        "non_preferred_output": [{"role": "assistant", "content": "Lyon."}],
    }
    return {**example, **overrides}


def test_dpo_valid(tmp_path: Path) -> None:
    tool_input = {"messages": [USER], "tools": TOOLS, "parallel_tool_calls": True}
    lines = [dpo()] * 9 + [dpo(input=tool_input, preferred_output=[{"role": "assistant", "tool_calls": [CALL]}])]
    report = validate_file(write(tmp_path, lines), "dpo")
    assert report.ok, report.errors


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"messages": [USER, ASSISTANT]}, "invalid_dpo_input"),
        (dpo(input=None), "invalid_dpo_input"),
        (dpo(input={"messages": [USER, ASSISTANT]}), "invalid_dpo_input"),
        (dpo(input={"messages": []}), "missing_messages_list"),
        (dpo(preferred_output={"role": "assistant", "content": "Paris."}), "invalid_dpo_output"),
        (dpo(non_preferred_output=[]), "invalid_dpo_output"),
        (dpo(preferred_output=[ASSISTANT, ASSISTANT]), "invalid_dpo_output"),
        (dpo(preferred_output=[{"role": "user", "content": "Paris."}]), "invalid_dpo_output"),
        (dpo(preferred_output=[{**ASSISTANT, "weight": 1}]), "invalid_weight"),
        (dpo(non_preferred_output=[{"role": "assistant"}]), "missing_content"),
    ],
)
def test_dpo_invalid(tmp_path: Path, bad: dict[str, Any], code: str) -> None:
    only_error(check(tmp_path, bad, "dpo", good=dpo()), code)


def test_dpo_identical_outputs_warn(tmp_path: Path) -> None:
    same = dpo(non_preferred_output=[{"role": "assistant", "content": "Paris."}])
    report = check(tmp_path, same, "dpo", good=dpo())
    assert report.ok and [w.code for w in report.warnings] == ["identical_dpo_outputs"]


# -- reinforcement -----------------------------------------------------------------------------------


def rft(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "developer", "content": "Answer with a city."}, USER], **extra}


def test_reinforcement_valid_with_grader_data(tmp_path: Path) -> None:
    lines = [rft(reference_answer={"city": "Paris"}, tools=TOOLS, parallel_tool_calls="anything")] * 10
    report = validate_file(write(tmp_path, lines), "reinforcement")
    assert report.ok and report.warnings == []


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"reference_answer": "Paris"}, "missing_messages_list"),
        (rft(messages=[{"role": "function", "name": "f", "content": "x"}, USER]), "unrecognized_role"),
        (rft(tools=[{"type": "function"}]), "invalid_tools"),
        (
            rft(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "unsupported_content",
        ),
    ],
)
def test_reinforcement_invalid(tmp_path: Path, bad: dict[str, Any], code: str) -> None:
    only_error(check(tmp_path, bad, "reinforcement", good=rft()), code)
