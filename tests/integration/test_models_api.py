"""/v1/models and /v1/chat/completions on a base model, through the official client."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"


def test_models_list_and_retrieve(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert TINY in ids
    model = client.models.retrieve(TINY)
    assert model.id == TINY and model.object == "model" and model.owned_by == "openft"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("ft:openft/tiny-chat:personal::nope1234")
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.models.delete(TINY)


def test_chat_with_a_base_model(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=5,
        temperature=0,
        seed=1,
        logit_bias={},
        user="someone",  # accepted and ignored
    )
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion" and reply.model == TINY
    (choice,) = reply.choices
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    two = client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, n=2)
    assert [c.index for c in two.choices] == [0, 1]


def test_chat_errors(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=TINY, messages=[])
    assert err.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "Hi"}], temperature=5)
