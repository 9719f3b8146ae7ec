"""A chat template without tools (as SmolLM2's): training, token estimates and serving all write tools,
calls and results in openft's Hermes-style format, so a call is trained and the served model sees the
tool definitions and is parsed back into ``tool_calls``. On tiny-chat's tokenizer with such a template."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from openft.data.chat_data import IGNORE_INDEX, tokenize_example
from openft.data.tool_format import for_template, renders_tools
from openft.jobs.estimate_tokens import TemplateTokenizer
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import load_tokenizer
from openft.serving.prompts import chat_prompt_ids
from openft.serving.tool_calls import parse_tool_calls

# SmolLM2's template in shape: roles and content only.
NO_TOOLS = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "book_table",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "people": {"type": "integer"}}},
        },
    }
]
CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "book_table", "arguments": '{"city": "Lyon", "people": 4}'},
}
EXAMPLE = {
    "messages": [
        {"role": "system", "content": "You book tables."},
        {"role": "user", "content": "A table for 4 in Lyon."},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "booked"},
        {"role": "assistant", "content": "Done."},
    ],
    "tools": TOOLS,
}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    tokenizer = copy.deepcopy(load_tokenizer(base, tmp_path_factory.mktemp("models")))
    tokenizer.chat_template = NO_TOOLS
    return tokenizer


def test_a_call_is_trained_as_a_block_that_serving_parses_back(plain: Any) -> None:
    tokens = tokenize_example(EXAMPLE, plain)
    trained = plain.decode(
        [t for t, label in zip(tokens.input_ids, tokens.labels, strict=True) if label != IGNORE_INDEX]
    )
    first_turn = trained.split("<|im_end|>")[0]
    content, calls = parse_tool_calls(first_turn)
    assert content is None and len(calls) == 1
    assert calls[0]["function"]["name"] == "book_table"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Lyon", "people": 4}
    assert trained.endswith("Done.<|im_end|>\n")
    whole = plain.decode(tokens.input_ids)
    assert "You book tables.\n\nYou may call" in whole and '"name": "book_table"' in whole
    assert "<|im_start|>user\n<tool_response>\nbooked\n</tool_response>" in whole  # the result, not trained


def test_serving_shows_the_model_the_tools_it_was_trained_with(plain: Any) -> None:
    prompt = EXAMPLE["messages"][:2]
    served = plain.decode(chat_prompt_ids(plain, "m", prompt, TOOLS))
    trained = plain.decode(tokenize_example(EXAMPLE, plain).input_ids)
    assert trained.startswith(served)  # the served prompt is the trained conversation's own beginning


def test_the_estimate_renders_as_training_does(plain: Any, tmp_path: Path) -> None:
    plain.save_pretrained(tmp_path)
    estimated = TemplateTokenizer(tmp_path)
    assert not renders_tools(estimated.chat_template)
    assert tokenize_example(EXAMPLE, estimated).input_ids == tokenize_example(EXAMPLE, plain).input_ids


def test_a_template_with_tools_and_a_conversation_without_them_are_left_alone() -> None:
    messages = EXAMPLE["messages"]
    assert for_template("{{ tools }}", messages, TOOLS) == (messages, TOOLS)
    simple = [{"role": "user", "content": "hi"}]
    assert for_template(NO_TOOLS, simple, None) == (simple, None)
