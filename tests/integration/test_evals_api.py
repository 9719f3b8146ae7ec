"""/v1/evals, runs and output items through the official client, on SQLite and PostgreSQL.

Runs execute in the app's own background executor (the same one ``openft serve`` runs), so these
tests wait for a run to finish as a user would, by polling it.
"""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from openai import OpenAI

from openft.settings import Settings
from openft.store import open_store
from openft.store.evals import SqlEvals

pytestmark = pytest.mark.integration

ITEM_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}
SIMILAR = {
    "type": "text_similarity",
    "name": "similar",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "evaluation_metric": "fuzzy_match",
    "pass_threshold": 0.8,
}


def _eval(client: OpenAI, criteria: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    return client.evals.create(
        name="capitals",
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True},
        testing_criteria=criteria or [EXACT, SIMILAR],  # type: ignore[list-item]
        **extra,
    )


def wait_for_run(client: OpenAI, eval_id: str, run_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status not in ("queued", "in_progress"):
            return run
        assert time.monotonic() < deadline, f"run still {run.status}"
        time.sleep(0.1)


def _jsonl_content(samples: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"item": {"question": f"q{i}", "answer": answer}, "sample": {"output_text": output}}
        for i, (answer, output) in enumerate(samples)
    ]


def test_eval_crud(client: OpenAI) -> None:
    created = _eval(client, metadata={"team": "geo"})
    assert created.object == "eval"
    assert created.id.startswith("eval_")
    assert created.data_source_config.type == "custom"
    assert created.data_source_config.schema_["properties"]["item"] == ITEM_SCHEMA
    assert [c.name for c in created.testing_criteria] == ["exact", "similar"]
    assert created.testing_criteria[1].pass_threshold == 0.8  # type: ignore[union-attr]
    other = _eval(client)
    assert client.evals.retrieve(created.id).name == "capitals"
    updated = client.evals.update(created.id, name="capitals v2", metadata={"team": "maps"})
    assert (updated.name, updated.metadata) == ("capitals v2", {"team": "maps"})
    first = client.evals.list(limit=1, order="asc")
    assert [e.id for e in first.data] == [created.id] and first.has_more
    assert [e.id for e in client.evals.list(after=created.id, order="asc").data] == [other.id]
    assert [e.id for e in client.evals.list(order="desc").data] == [other.id, created.id]
    deleted = client.evals.delete(created.id)
    assert deleted.deleted and deleted.eval_id == created.id
    with pytest.raises(openai.NotFoundError):
        client.evals.retrieve(created.id)


@pytest.mark.parametrize(
    ("criterion", "param"),
    [
        ({"type": "bleu_score", "name": "x"}, "testing_criteria[0].type"),
        ({**EXACT, "input": "{{sample.output_text"}, None),
        ({**EXACT, "reference": "{{item.capital}}"}, "testing_criteria[0]"),
        ({**EXACT, "reference": "{{thing.answer}}"}, "testing_criteria[0]"),
        ({**SIMILAR, "pass_threshold": None}, "testing_criteria[0].pass_threshold"),
        (
            {
                "type": "label_model",
                "name": "judge",
                "model": "no-such-model",
                "input": [{"role": "user", "content": "{{sample.output_text}}"}],
                "labels": ["good", "bad"],
                "passing_labels": ["good"],
            },
            "testing_criteria[0].model",
        ),
    ],
)
def test_bad_criteria_are_400_at_create(client: OpenAI, criterion: dict[str, Any], param: str | None) -> None:
    criterion = {k: v for k, v in criterion.items() if v is not None}
    try:
        _eval(client, [criterion])
    except openai.BadRequestError as exc:
        if param is not None:
            assert exc.param == param, exc.message
    else:
        if criterion.get("input") != "{{sample.output_text":  # an unclosed brace is plain text, as in OpenAI
            pytest.fail("no 400")


def test_bad_item_schema_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.evals.create(
            data_source_config={"type": "custom", "item_schema": {"type": "nothing"}},
            testing_criteria=[EXACT],  # type: ignore[list-item]
        )
    assert caught.value.param == "data_source_config.item_schema"


def test_jsonl_run_counts_and_output_items(client: OpenAI) -> None:
    created = _eval(client)
    content = _jsonl_content([("Paris", "Paris"), ("Rome", "Rome!"), ("Oslo", "Bergen"), ("Bern", "Bern")])
    run = client.evals.runs.create(
        created.id,
        name="given answers",
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": content}},
    )
    assert run.status == "queued" and run.object == "eval.run"
    assert run.report_url.endswith(f"/evals/{created.id}/runs/{run.id}")
    done = wait_for_run(client, created.id, run.id)
    assert done.status == "completed", done.error
    counts = done.result_counts
    assert (counts.total, counts.passed, counts.failed, counts.errored) == (4, 2, 2, 0)
    per = {r.testing_criteria: (r.passed, r.failed) for r in done.per_testing_criteria_results}
    assert per == {"exact": (2, 2), "similar": (3, 1)}
    items = client.evals.runs.output_items.list(run.id, eval_id=created.id, limit=100).data
    assert sorted(i.datasource_item_id for i in items) == [0, 1, 2, 3]
    by_index = {i.datasource_item_id: i for i in items}
    assert by_index[2].status == "fail"
    assert by_index[2].datasource_item == content[2]["item"]
    assert {r.name: r.passed for r in by_index[1].results} == {"exact": False, "similar": True}
    failed = client.evals.runs.output_items.list(run.id, eval_id=created.id, status="fail")
    assert sorted(i.datasource_item_id for i in failed.data) == [1, 2]
    one = client.evals.runs.output_items.retrieve(by_index[0].id, eval_id=created.id, run_id=run.id)
    assert one.status == "pass" and one.sample.output[0].content == "Paris"


def test_item_errors_are_errored_items_never_a_failed_run(client: OpenAI, settings: Settings) -> None:
    created = _eval(client, [{**EXACT, "input": "{{sample.output_json.answer}}"}])
    line_ok = '{"item": {"question": "q", "answer": "A"}, "sample": {"output_text": "{\\"answer\\": \\"A\\"}"}}'
    lines = [line_ok, "not json", '{"item": {"question": "q"}}', '{"item": {"question": "q", "answer": "A"}}']
    upload = client.files.create(file=("items.jsonl", ("\n".join(lines) + "\n").encode()), purpose="evals")
    run = client.evals.runs.create(
        created.id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": upload.id}}
    )
    done = wait_for_run(client, created.id, run.id)
    assert done.status == "completed"
    counts = done.result_counts
    assert (counts.total, counts.passed, counts.failed, counts.errored) == (4, 1, 0, 3)
    items = {i.datasource_item_id: i for i in client.evals.runs.output_items.list(run.id, eval_id=created.id).data}
    assert "not JSON" in items[1].sample.error.message
    assert "item_schema" in items[2].sample.error.message
    assert items[3].status == "error" and "output_json" in items[3].results[0].error


def test_file_content_items_not_matching_the_schema_are_400(client: OpenAI) -> None:
    created = _eval(client)
    with pytest.raises(openai.BadRequestError) as caught:
        client.evals.runs.create(
            created.id,
            data_source={"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"question": 3}}]}},
        )
    assert caught.value.param == "data_source.source.content[0]"
    with pytest.raises(openai.BadRequestError) as caught:
        client.evals.runs.create(
            created.id,
            data_source={
                "type": "completions",
                "model": "no-such-model",
                "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
                "source": {"type": "file_content", "content": [{"item": {"question": "q", "answer": "a"}}]},
            },
        )
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.evals.runs.create(
            created.id,
            data_source={
                "type": "completions",
                "model": "openft/tiny-chat",
                "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.nope}}"}]},
                "source": {"type": "file_content", "content": [{"item": {"question": "q", "answer": "a"}}]},
            },
        )
    assert caught.value.param == "data_source.input_messages"


def test_cancel_and_delete_runs(client: OpenAI, settings: Settings) -> None:
    created = _eval(client)
    content = _jsonl_content([("a", "a")])
    store = open_store(settings.sqlalchemy_url, upgrade=False).evals
    run = client.evals.runs.create(
        created.id, data_source={"type": "jsonl", "source": {"type": "file_content", "content": content}}
    )
    canceled = client.evals.runs.cancel(run.id, eval_id=created.id)
    assert canceled.status in ("canceled", "completed")
    assert store.get_run(run.id, "org-personal").status == canceled.status
    listed = client.evals.runs.list(created.id)
    assert [r.id for r in listed.data] == [run.id]
    deleted = client.evals.runs.delete(run.id, eval_id=created.id)
    assert deleted.deleted and deleted.run_id == run.id
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run.id, eval_id=created.id)


def test_a_run_is_claimed_once_and_a_stale_one_is_taken_over(client: OpenAI, settings: Settings) -> None:
    from openft.store.evals import IN_PROGRESS, EvalRunRow, OutputItemRow

    store = SqlEvals(open_store(settings.sqlalchemy_url, upgrade=False).engine)
    assert store.claim_run("nobody", stale_before=time.time()) is None
    created = _eval(client)
    content = _jsonl_content([("Paris", "Paris"), ("Rome", "Rome"), ("Oslo", "Bergen")])
    data_source = {"type": "jsonl", "source": {"type": "file_content", "content": content}}
    # A run held by a process that died while grading it: its first item graded, its heartbeat old.
    run = EvalRunRow(
        id="evalrun_deadholder",
        eval_id=created.id,
        organization_id="org-personal",
        name="orphan",
        status=IN_PROGRESS,
        data_source=data_source,
        created_at=int(time.time()),
        worker_id="dead",
        heartbeat_at=time.time() - 3600,
        attempts=1,
    )
    store.insert_run(run)
    graded_by_the_dead = OutputItemRow(
        id="outputitem_dead0",
        run_id=run.id,
        eval_id=created.id,
        datasource_item_id=0,
        datasource_item=content[0]["item"],
        status="pass",
        results=[{"name": "exact", "passed": True, "score": 1.0}, {"name": "similar", "passed": True, "score": 1.0}],
        sample={"model": "", "usage": {}},
        created_at=run.created_at,
    )
    assert store.add_output_item(graded_by_the_dead)
    assert not store.add_output_item(graded_by_the_dead)  # one row per data source item
    # The app's executor takes it over and grades only what the dead one left.
    done = wait_for_run(client, created.id, run.id)
    assert done.status == "completed"
    items = client.evals.runs.output_items.list(run.id, eval_id=created.id).data
    assert sorted(i.datasource_item_id for i in items) == [0, 1, 2]
    assert "outputitem_dead0" in {i.id for i in items}
    assert done.result_counts.total == 3 and store.get_run(run.id, "org-personal").attempts == 2

    # Two executors racing for one queued run: exactly one gets it.
    run2 = client.evals.runs.create(created.id, data_source=data_source)
    store.cancel_run(run2.id, "org-personal", created.id)  # keep the app's executor off it
    engine = store.engine
    with engine.begin() as conn:
        from sqlalchemy import update

        from openft.store import schema as s

        conn.execute(
            update(s.eval_runs)
            .where(s.eval_runs.c.id == run2.id)
            .values(status=IN_PROGRESS, worker_id="dead", heartbeat_at=time.time() - 20, finished_at=None)
        )
    # Stale after 10 s for these two, while the app's own executor waits 30 s before taking a run over.
    claims = [store.claim_run(f"executor-{i}", stale_before=time.time() - 10) for i in range(2)]
    taken = [c for c in claims if c is not None and c.id == run2.id]
    assert len(taken) == 1 and taken[0].worker_id in ("executor-0", "executor-1")
    assert not store.hold_run(run2.id, "dead")  # the former holder writes nothing more
