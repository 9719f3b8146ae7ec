"""Legacy prompt/completion lines on a base model without a chat template: plain text, loss on the completion."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from openft.data.chat_data import IGNORE_INDEX, tokenize_example
from openft.data.chat_messages import TrainingDataError
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import load_tokenizer


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return load_tokenizer(base, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def base_tokenizer(chat_tokenizer: Any) -> Any:
    plain = copy.deepcopy(chat_tokenizer)
    plain.chat_template = None
    return plain


def test_prompt_is_context_and_completion_plus_eos_is_trained(base_tokenizer: Any) -> None:
    tokens = tokenize_example({"prompt": "2 + 2 =", "completion": " 4"}, base_tokenizer, line=5)
    prompt_ids = base_tokenizer("2 + 2 =")["input_ids"]  # what /v1/completions feeds the model
    assert tokens.line == 5
    assert tokens.input_ids[: len(prompt_ids)] == prompt_ids
    assert base_tokenizer.decode(tokens.input_ids) == base_tokenizer.decode(prompt_ids) + " 4<|im_end|>"
    trained = [t for t, label in zip(tokens.input_ids, tokens.labels, strict=True) if label != IGNORE_INDEX]
    assert base_tokenizer.decode(trained) == " 4<|im_end|>"
    assert tokens.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)


def test_a_chat_model_still_gets_a_user_and_an_assistant_turn(chat_tokenizer: Any, base_tokenizer: Any) -> None:
    line = {"prompt": "Hi", "completion": "Yo"}
    assert "<|im_start|>user" in chat_tokenizer.decode(tokenize_example(line, chat_tokenizer).input_ids)
    assert "<|im_start|>" not in base_tokenizer.decode(tokenize_example(line, base_tokenizer).input_ids)


def test_a_non_string_completion_is_refused(base_tokenizer: Any) -> None:
    with pytest.raises(TrainingDataError, match="must both be strings"):
        tokenize_example({"prompt": "Hi", "completion": 3}, base_tokenizer)
