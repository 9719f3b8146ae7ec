"""Serving against a live server with the official client: base, fine-tuned and checkpoint models,
streamed and not, n=2, stop sequences, seeds, tool calls, JSON mode, concurrent mixed adapters, delete.

One real fine-tuning job of openft/tiny-chat (module fixture) teaches the model to answer with a tool
call when it is given tools, so the tool-call test exercises a real model's output, not a fake.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from e2e_support import LiveServer
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
TINY = "openft/tiny-chat"
# Short on purpose: the tools are rendered into every training prompt.
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
QUESTIONS = [
    "Weather?",
    "Rain?",
    "Sun?",
    "Forecast?",
    "Umbrella?",
    "Snow?",
    "Wind?",
    "Warm?",
    "Cold?",
    "Clouds?",
]
ASK = [{"role": "user", "content": "Weather?"}]


def _tool_call_examples() -> bytes:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": "{}"},
    }
    lines = [
        {
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": None, "tool_calls": [call]}],
            "tools": TOOLS,
        }
        for q in QUESTIONS
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture(scope="module")
def trained(live_server: LiveServer) -> tuple[str, str]:
    """(fine-tuned model, one of its checkpoints) of a job trained to call ``weather``."""
    client = live_server.client()
    file = client.files.create(file=("tools.jsonl", _tool_call_examples()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=file.id,
        suffix="tools",
        seed=3,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 14}},
        },
    )
    deadline = time.time() + 1500  # a few minutes on a quiet machine
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.time() < deadline, f"job still {job.status}"
        time.sleep(0.2)
    assert job.status == "succeeded", job.error
    checkpoints = [c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    step = next(c for c in checkpoints if ":ckpt-step-" in c)
    return job.fine_tuned_model, step


def _streamed(client: OpenAI, **params: Any) -> tuple[dict[int, str], dict[int, str], Any]:
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    usage = None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **params):
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    return texts, reasons, usage


def test_base_fine_tuned_and_checkpoint_stream_what_they_answer(
    live_server: LiveServer, trained: tuple[str, str]
) -> None:
    client = live_server.client()
    answers = {}
    for model in (TINY, *trained):
        params: dict[str, Any] = {"model": model, "messages": ASK, "max_tokens": 30, "temperature": 0.7, "seed": 5}
        reply = client.chat.completions.create(**params)
        texts, reasons, usage = _streamed(client, **params)
        assert reply.model == model and reply.usage is not None and usage is not None
        assert texts == {0: reply.choices[0].message.content}
        assert reasons == {0: reply.choices[0].finish_reason}
        assert usage.completion_tokens == reply.usage.completion_tokens
        answers[model] = reply.choices[0].message.content
    assert answers[TINY] != answers[trained[0]]  # the adapter is applied


def test_n_stop_and_seed(live_server: LiveServer) -> None:
    client = live_server.client()
    params: dict[str, Any] = {"model": TINY, "messages": ASK, "max_tokens": 40, "temperature": 1.0, "seed": 21, "n": 2}
    first = client.chat.completions.create(**params)
    again = client.chat.completions.create(**params)
    other = client.chat.completions.create(**{**params, "seed": 22})
    texts = [c.message.content or "" for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1] and texts[0] != texts[1]
    assert texts == [c.message.content for c in again.choices]
    assert texts != [c.message.content for c in other.choices]
    streamed, reasons, _ = _streamed(client, **params)
    assert streamed == dict(enumerate(texts)) and set(reasons) == {0, 1}

    stop = texts[0][10:13]
    cut = client.chat.completions.create(**{**params, "n": 1, "stop": [stop, "never-there"]})
    assert cut.choices[0].message.content == texts[0][: texts[0].find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_fine_tuned_model_calls_the_tool(live_server: LiveServer, trained: tuple[str, str]) -> None:
    client = live_server.client()
    model, _ = trained
    reply = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, max_tokens=80, temperature=0)  # type: ignore[arg-type]
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {}

    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=ASK,
            tools=TOOLS,
            max_tokens=80,  # type: ignore[arg-type]
            temperature=0,
            stream=True,
        )
    )
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [tc.function.name for tc in calls if tc.function] == ["weather"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
    # Without tools the same text stays plain content.
    plain = client.chat.completions.create(model=model, messages=ASK, max_tokens=80, temperature=0)
    assert not plain.choices[0].message.tool_calls


def test_json_object_answers_parse(live_server: LiveServer, trained: tuple[str, str]) -> None:
    client = live_server.client()
    for model in (TINY, trained[0]):
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Answer in JSON."}],
            max_tokens=40,
            response_format={"type": "json_object"},
            temperature=1.0,
            seed=4,
        )
        assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_concurrent_requests_for_different_adapters(live_server: LiveServer, trained: tuple[str, str]) -> None:
    client = live_server.client()
    models = [TINY, *trained, TINY, *trained]
    params: dict[str, Any] = {"messages": ASK, "max_tokens": 24, "temperature": 0}
    alone = [client.chat.completions.create(model=m, **params).choices[0].message.content for m in models[:3]]
    together: list[str | None] = [None] * len(models)

    def ask(i: int) -> None:
        together[i] = client.chat.completions.create(model=models[i], **params).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert together == alone + alone


def test_delete_follows_openai_rules(live_server: LiveServer, trained: tuple[str, str], tmp_path: Path) -> None:
    client = live_server.client()
    model, checkpoint = trained
    with pytest.raises(openai.BadRequestError):
        client.models.delete(TINY)
    with pytest.raises(openai.BadRequestError) as err:
        client.models.delete(checkpoint)  # checkpoints go with their model
    assert err.value.param == "model"
    client.chat.completions.create(model=checkpoint, messages=ASK, max_tokens=2)
    deleted = client.models.delete(model)
    assert (deleted.id, deleted.deleted, deleted.object) == (model, True, "model")
    ids = [m.id for m in client.models.list()]
    assert model not in ids and checkpoint not in ids and TINY in ids
    for gone in (model, checkpoint):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=gone, messages=ASK, max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.models.delete(model)
