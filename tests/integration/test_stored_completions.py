"""Stored chat completions through the official client: ``store: true`` keeps the request and answer,
list filters by model and metadata, retrieve / update / delete / messages, per organization; an eval
runs over a selection of them, and ``openft completions export`` turns one into a fine-tuning file
that validates."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.cli.completions import export_lines
from openft.data.validation import validate_file

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"


def _ask(client: OpenAI, question: str, **extra: object) -> str:
    reply = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
        max_tokens=8,
        temperature=0,
        **extra,  # type: ignore[arg-type]
    )
    return reply.id


@pytest.fixture
def stored(client: OpenAI) -> dict[str, str]:
    return {
        "geo1": _ask(client, "Capital of France?", store=True, metadata={"topic": "geo"}),
        "geo2": _ask(client, "Capital of Italy?", store=True, metadata={"topic": "geo", "tier": "free"}),
        "math": _ask(client, "2 + 2?", store=True, metadata={"topic": "math"}),
        "unstored": _ask(client, "Not kept.", metadata={"topic": "geo"}),
    }


def test_store_list_filter_retrieve_update_delete(client: OpenAI, stored: dict[str, str]) -> None:
    listed = [c.id for c in client.chat.completions.list()]
    assert listed == [stored["geo1"], stored["geo2"], stored["math"]]  # oldest first; the unstored one is not kept
    geo = [c.id for c in client.chat.completions.list(metadata={"topic": "geo"})]
    assert geo == [stored["geo1"], stored["geo2"]]
    assert [c.id for c in client.chat.completions.list(metadata={"topic": "geo", "tier": "free"})] == [stored["geo2"]]
    assert [c.id for c in client.chat.completions.list(model="other-model")] == []
    assert [c.id for c in client.chat.completions.list(order="desc", limit=1).data] == [stored["math"]]
    page = client.chat.completions.list(limit=1)
    assert page.has_more and [c.id for c in page.data] == [stored["geo1"]]

    one = client.chat.completions.retrieve(stored["geo1"])
    assert one.model == TINY and one.metadata == {"topic": "geo"} and one.choices[0].message.role == "assistant"
    messages = list(client.chat.completions.messages.list(stored["geo1"]))
    assert [(m.role, m.content) for m in messages] == [("system", "Be brief."), ("user", "Capital of France?")]
    assert messages[0].id != messages[1].id

    updated = client.chat.completions.update(stored["math"], metadata={"topic": "arithmetic"})
    assert updated.metadata == {"topic": "arithmetic"}
    assert [c.id for c in client.chat.completions.list(metadata={"topic": "math"})] == []
    assert [c.id for c in client.chat.completions.list(metadata={"topic": "arithmetic"})] == [stored["math"]]

    deleted = client.chat.completions.delete(stored["math"])
    assert deleted.deleted and deleted.id == stored["math"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(stored["math"])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(stored["unstored"])


def test_a_streamed_completion_is_kept_whole_once_its_stream_ends(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": "Capital of Spain?"}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        store=True,
        metadata={"via": "stream"},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next(c.usage for c in chunks if c.usage is not None)
    kept = client.chat.completions.retrieve(chunks[0].id)
    assert kept.metadata == {"via": "stream"} and kept.choices[0].message.content == streamed
    assert kept.choices[0].finish_reason == next(c.choices[0].finish_reason for c in chunks[::-1] if c.choices)
    assert kept.usage is not None and kept.usage.completion_tokens == usage.completion_tokens > 0
    assert [c.id for c in client.chat.completions.list(metadata={"via": "stream"})] == [chunks[0].id]


def test_bad_metadata_is_400_before_generating(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(client, "x", store=True, metadata={f"k{i}": "v" for i in range(17)})
    assert caught.value.param == "metadata"
    assert list(client.chat.completions.list()) == []


def test_stored_completions_belong_to_their_organization(app: FastAPI, http: TestClient) -> None:
    keys = app.state.keys
    acme = OpenAI(base_url="http://testserver/v1", api_key=keys.create("org-acme")[1], http_client=http, max_retries=0)
    globex = OpenAI(
        base_url="http://testserver/v1", api_key=keys.create("org-globex")[1], http_client=http, max_retries=0
    )
    kept = _ask(acme, "Secret?", store=True, metadata={"topic": "geo"})
    assert [c.id for c in acme.chat.completions.list()] == [kept]
    assert list(globex.chat.completions.list()) == []
    for call in (
        lambda: globex.chat.completions.retrieve(kept),
        lambda: globex.chat.completions.update(kept, metadata={"x": "y"}),
        lambda: globex.chat.completions.delete(kept),
        lambda: list(globex.chat.completions.messages.list(kept)),
    ):
        with pytest.raises(openai.NotFoundError):
            call()


def test_an_eval_runs_over_a_selection_of_stored_completions(client: OpenAI, stored: dict[str, str]) -> None:
    ev = client.evals.create(
        name="stored",
        data_source_config={"type": "stored_completions", "metadata": {"topic": "geo"}},
        testing_criteria=[
            {
                "type": "string_check",
                "name": "answered the stored answer",
                "input": "{{sample.output_text}}",
                "reference": "{{item.output_text}}",
                "operation": "eq",
            },
            {
                "type": "python",
                "name": "asked a question",
                "source": "def grade(sample, item):\n    return float(item['input'][-1]['content'].endswith('?'))\n",
            },
        ],
    )
    assert ev.data_source_config.type == "stored_completions"
    run = client.evals.runs.create(
        ev.id,
        data_source={
            "type": "completions",
            "source": {"type": "stored_completions", "model": TINY, "metadata": {"topic": "geo"}},
        },
    )
    deadline = time.monotonic() + 120
    while (run := client.evals.runs.retrieve(run.id, eval_id=ev.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert run.status == "completed", run.error
    assert (run.result_counts.total, run.result_counts.passed) == (2, 2)
    items = client.evals.runs.output_items.list(run.id, eval_id=ev.id).data
    assert sorted(i.datasource_item["id"] for i in items) == sorted([stored["geo1"], stored["geo2"]])

    # The same selection, answered anew by a model (greedy, so the same answers as stored).
    rerun = client.evals.runs.create(
        ev.id,
        data_source={
            "type": "completions",
            "model": TINY,
            "input_messages": {"type": "item_reference", "item_reference": "item.input"},
            "sampling_params": {"temperature": 0, "max_completion_tokens": 8},
            "source": {"type": "stored_completions", "metadata": {"topic": "geo"}, "limit": 1},
        },
    )
    while (rerun := client.evals.runs.retrieve(rerun.id, eval_id=ev.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert rerun.status == "completed", rerun.error
    assert (rerun.result_counts.total, rerun.result_counts.passed) == (1, 1)
    assert rerun.per_model_usage[0].run_model_name == TINY


def test_export_makes_a_fine_tuning_file_that_validates(client: OpenAI, stored: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(export_lines(client, model=TINY, metadata={"topic": "geo"})))
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    for _ in range(4):  # a supervised file needs at least 10 examples; the same selection, exported again
        path.write_text(path.read_text() + "".join(export_lines(client, metadata={"topic": "geo"})))
    report = validate_file(path)
    assert report.ok, report
    first = client.chat.completions.retrieve(stored["geo1"])
    assert json.loads(lines[0])["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": first.choices[0].message.content},
    ]
    later = int(time.time()) + 3600
    assert list(export_lines(client, metadata={"topic": "geo"}, created_after=later)) == []
