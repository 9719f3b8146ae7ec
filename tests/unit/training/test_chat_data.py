"""Loss masking and tokenization of fine-tuning lines (data/chat_data.py), on tiny-chat's tokenizer."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from openft.data.chat_data import (
    IGNORE_INDEX,
    TrainingDataError,
    load_chat_examples,
    tokenize_example,
)
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import load_tokenizer

ANSWER = "Paris is the capital of France."


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return load_tokenizer(base, tmp_path_factory.mktemp("models"))


def trained_text(tokenizer: Any, example: dict[str, Any]) -> str:
    tokens = tokenize_example(example, tokenizer)
    assert len(tokens.input_ids) == len(tokens.labels)
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(tokens.input_ids, tokens.labels, strict=True))
    return tokenizer.decode(
        [t for t, label in zip(tokens.input_ids, tokens.labels, strict=True) if label != IGNORE_INDEX]
    )


def chat(*turns: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in turns], **extra}


def test_only_assistant_tokens_have_labels_end_of_turn_included(tokenizer: Any) -> None:
    example = chat(("system", "You are terse."), ("user", "Capital of France?"), ("assistant", ANSWER))
    tokens = tokenize_example(example, tokenizer)
    rendered = tokenizer.apply_chat_template(example["messages"], tokenize=False)
    assert tokenizer.decode(tokens.input_ids) == rendered
    assert trained_text(tokenizer, example) == ANSWER + "<|im_end|>\n"
    # Everything before the assistant's content (system, user, the assistant header) is masked.
    prompt = tokenizer.apply_chat_template(example["messages"][:2], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert set(tokens.labels[:n_prompt]) == {IGNORE_INDEX}
    assert IGNORE_INDEX not in tokens.labels[n_prompt:]


def test_weight_zero_assistant_turns_are_not_trained(tokenizer: Any) -> None:
    example = chat(("user", "Hi"), ("assistant", "Bad answer"), ("user", "Again"), ("assistant", "Good answer"))
    example["messages"][1]["weight"] = 0
    assert trained_text(tokenizer, example) == "Good answer<|im_end|>\n"
    example["messages"][3]["weight"] = 0
    assert trained_text(tokenizer, example) == ""
    example["messages"][1]["weight"] = 1
    assert trained_text(tokenizer, example) == "Bad answer<|im_end|>\n"


def test_every_assistant_turn_is_trained_by_default(tokenizer: Any) -> None:
    example = chat(("user", "One"), ("assistant", "First"), ("user", "Two"), ("assistant", "Second"))
    assert trained_text(tokenizer, example) == "First<|im_end|>\nSecond<|im_end|>\n"


def test_prompt_completion_lines_become_a_user_and_an_assistant_turn(tokenizer: Any) -> None:
    example = {"prompt": "Capital of France?", "completion": ANSWER}
    tokens = tokenize_example(example, tokenizer)
    assert tokenizer.decode(tokens.input_ids) == (
        f"<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n{ANSWER}<|im_end|>\n"
    )
    assert trained_text(tokenizer, example) == ANSWER + "<|im_end|>\n"


def test_content_parts_are_joined_into_a_string(tokenizer: Any) -> None:
    parts = chat(("user", "Hi"), ("assistant", "x"))
    parts["messages"][0]["content"] = [
        {"type": "text", "text": "Capital "},
        {"type": "text", "text": "of France?"},
    ]
    parts["messages"][1]["content"] = [{"type": "text", "text": ANSWER}]
    plain = chat(("user", "Capital of France?"), ("assistant", ANSWER))
    assert tokenize_example(parts, tokenizer) == tokenize_example(plain, tokenizer)
    image = chat(("user", "x"), ("assistant", "y"))
    image["messages"][0]["content"] = [{"type": "image_url", "image_url": {"url": "data:"}}]
    with pytest.raises(TrainingDataError, match="image_url"):
        tokenize_example(image, tokenizer)


def test_tools_and_tool_calls_are_rendered_and_only_the_call_is_trained(tokenizer: Any) -> None:
    tools = [{"type": "function", "function": {"name": "get_capital", "parameters": {"type": "object"}}}]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_capital", "arguments": json.dumps({"country": "France"})},
    }
    example = {
        "messages": [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Paris"},
            {"role": "assistant", "content": ANSWER},
        ],
        "tools": tools,
    }
    rendered = tokenizer.decode(tokenize_example(example, tokenizer).input_ids)
    assert rendered.startswith("<|im_start|>tools\n") and '"name": "get_capital"' in rendered
    # Arguments arrive as a JSON string (OpenAI) and are rendered as an object (Hugging Face templates).
    call_text = '<tool_call>{"name": "get_capital", "arguments": {"country": "France"}}</tool_call>'
    assert trained_text(tokenizer, example) == f"{call_text}<|im_end|>\n{ANSWER}<|im_end|>\n"


def test_a_template_that_is_not_prefix_stable_is_a_clear_error(tokenizer: Any) -> None:
    unstable = copy.deepcopy(tokenizer)
    # Prints the number of messages first, so no prefix renders as a prefix of the whole.
    unstable.chat_template = (
        "{{ messages | length }}{% for m in messages %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(TrainingDataError, match="prefix-stable"):
        tokenize_example(chat(("user", "Hi"), ("assistant", "Hello")), unstable)


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_load_truncates_long_examples_and_reports_their_lines(tokenizer: Any, tmp_path: Path) -> None:
    short = chat(("user", "Hi"), ("assistant", "Yo"))
    long = chat(("user", "Hi " * 40), ("assistant", ANSWER * 3))
    path = write_jsonl(tmp_path / "train.jsonl", [short, long, "", short, long])
    examples, truncated = load_chat_examples(path, tokenizer, max_seq_len=64)
    assert truncated == [2, 5]  # 1-based file lines; the blank line 3 is skipped but counted
    assert [e.line for e in examples] == [1, 2, 4, 5]
    assert [len(e.input_ids) for e in examples] == [
        len(examples[0].input_ids),
        64,
        len(examples[0].input_ids),
        64,
    ]
    assert all(len(e.labels) == len(e.input_ids) for e in examples)
    full, none = load_chat_examples(path, tokenizer, max_seq_len=10_000)
    assert none == [] and full[1].input_ids[:64] == examples[1].input_ids


def test_load_names_the_bad_line(tokenizer: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [chat(("user", "Hi"), ("assistant", "Yo")), "{not json"])
    with pytest.raises(TrainingDataError, match=r"bad.jsonl line 2: invalid JSON"):
        load_chat_examples(path, tokenizer, max_seq_len=100)
    path = write_jsonl(tmp_path / "empty.jsonl", [{"messages": []}])
    with pytest.raises(TrainingDataError, match=r"line 1: expected a non-empty 'messages' list"):
        load_chat_examples(path, tokenizer, max_seq_len=100)
