"""The contract of the newer record stores: ``store.responses``, ``store.evals`` and ``store.completions``.

The same tests run on the in-memory twin, SQLite and PostgreSQL (the fixtures of ``tests/store_backends.py``):
another organization's rows are absent, pages come in both orders with cursors, metadata updates and
deletes show in later reads, the eval runs' queue hands a run out once and takes over only stale ones, a
holder's writes stop once it no longer holds its run, and a run has one output item per data source item.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from openft.errors import InvalidRequest
from openft.store import InMemoryStore, Store, open_store
from openft.store.completions import CompletionFilter, CompletionNotFound, CompletionRecords, StoredCompletionRow
from openft.store.evals import (
    CANCELED,
    COMPLETED,
    IN_PROGRESS,
    QUEUED,
    EvalNotFound,
    EvalRecords,
    EvalRow,
    EvalRunNotFound,
    EvalRunRow,
    OutputItemNotFound,
    OutputItemRow,
)
from openft.store.responses import ResponseNotFound, ResponseRecords
from store_backends import backend_fixture, store_fixture  # noqa: F401  # every test runs on each backend

pytestmark = pytest.mark.integration
ORG, OTHER = "org-a", "org-b"


# -- responses ---------------------------------------------------------------------------------------
def message(item_id: str, text: str = "hi") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def response(response_id: str, previous: str | None = None) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "model": "openft/tiny-chat",
        "created_at": int(time.time()),
        "previous_response_id": previous,
        "output": [{"id": f"msg_{response_id}", "type": "message", "role": "assistant", "content": []}],
    }


def test_responses_are_scoped_by_organization_and_carry_their_conversation(store: Store) -> None:
    first = response("resp_1")
    store.responses.insert(first, [message("in_1")], organization_id=ORG, project_id="proj")
    later = [message("in_1"), first["output"][0], message("in_2", "again")]
    store.responses.insert(response("resp_2", "resp_1"), later, organization_id=ORG, project_id=None)
    assert store.responses.get("resp_1", ORG) == first
    conversation = store.responses.conversation("resp_2", ORG, param="previous_response_id")
    assert conversation.body["previous_response_id"] == "resp_1" and conversation.input_items == later
    with pytest.raises(ResponseNotFound) as caught:
        store.responses.conversation("resp_2", OTHER, param="previous_response_id")
    assert caught.value.param == "previous_response_id"
    with pytest.raises(ResponseNotFound):
        store.responses.get("resp_1", OTHER)
    with pytest.raises(ResponseNotFound):
        store.responses.input_items("resp_1", OTHER, after=None, limit=10, order="asc")
    with pytest.raises(ResponseNotFound):
        store.responses.delete("resp_1", OTHER)
    # Deleting an earlier response leaves the later one whole.
    store.responses.delete("resp_1", ORG)
    with pytest.raises(ResponseNotFound):
        store.responses.get("resp_1", ORG)
    with pytest.raises(ResponseNotFound):
        store.responses.delete("resp_1", ORG)
    assert store.responses.conversation("resp_2", ORG, param="previous_response_id").input_items == later


def test_input_items_page_in_both_orders_with_cursors(store: Store) -> None:
    items = [message(f"in_{n}") for n in range(5)]
    store.responses.insert(response("resp_1"), items, organization_id=ORG, project_id=None)
    store.responses.insert(response("resp_2"), [message("in_9")], organization_id=ORG, project_id=None)
    records: ResponseRecords = store.responses

    def ids(after: str | None, order: Any) -> tuple[list[str], bool]:
        page, more = records.input_items("resp_1", ORG, after=after, limit=2, order=order)
        return [i["id"] for i in page], more

    assert ids(None, "asc") == (["in_0", "in_1"], True)
    assert ids("in_1", "asc") == (["in_2", "in_3"], True)
    assert ids("in_3", "asc") == (["in_4"], False)
    assert ids(None, "desc") == (["in_4", "in_3"], True)
    assert ids("in_1", "desc") == (["in_0"], False)
    with pytest.raises(InvalidRequest) as caught:
        ids("in_9", "asc")  # another response's item
    assert caught.value.param == "after"


# -- stored completions ------------------------------------------------------------------------------
def completion(
    completion_id: str, *, organization_id: str = ORG, model: str = "m1", created_at: int = 100, **metadata: str
) -> StoredCompletionRow:
    return StoredCompletionRow(
        id=completion_id,
        organization_id=organization_id,
        model=model,
        request={"messages": [{"role": "user", "content": completion_id}]},
        completion={"id": completion_id, "object": "chat.completion", "choices": []},
        created_at=created_at,
        metadata=metadata or None,
    )


def test_stored_completions_are_scoped_filtered_and_paged(store: Store) -> None:
    records: CompletionRecords = store.completions
    records.insert(completion("cc_1", created_at=100, topic="geo"))
    records.insert(completion("cc_2", model="m2", created_at=200, topic="geo"))
    records.insert(completion("cc_x", organization_id=OTHER, created_at=250, topic="geo"))
    records.insert(completion("cc_3", created_at=300, topic="math"))
    records.insert(completion("cc_4", created_at=400))

    def ids(where: CompletionFilter | None = None, **page: Any) -> tuple[list[str], bool]:
        chosen = where or CompletionFilter()
        rows, more = records.page(ORG, chosen, **{"after": None, "limit": 2, "order": "asc", **page})
        return [r.id for r in rows], more

    assert ids() == (["cc_1", "cc_2"], True)
    assert ids(after="cc_2") == (["cc_3", "cc_4"], False)
    assert ids(order="desc") == (["cc_4", "cc_3"], True)
    assert ids(order="desc", after="cc_3") == (["cc_2", "cc_1"], False)
    assert ids(after="cc_x") == (["cc_1", "cc_2"], True)  # another organization's cursor: the first page
    assert ids(CompletionFilter(model="m1"), limit=10) == (["cc_1", "cc_3", "cc_4"], False)
    assert ids(CompletionFilter(metadata={"topic": "geo"}), limit=10) == (["cc_1", "cc_2"], False)
    assert ids(CompletionFilter(created_after=200, created_before=300), limit=10) == (["cc_2", "cc_3"], False)
    selected = records.select(ORG, CompletionFilter(metadata={"topic": "geo"}), limit=None)
    assert [r.id for r in selected] == ["cc_1", "cc_2"]
    assert [r.id for r in records.select(ORG, CompletionFilter(), limit=3)] == ["cc_1", "cc_2", "cc_3"]
    got = records.get("cc_2", ORG)
    assert (got.model, got.metadata, got.request["messages"][0]["content"]) == ("m2", {"topic": "geo"}, "cc_2")
    with pytest.raises(CompletionNotFound):
        records.get("cc_1", OTHER)
    assert [r.id for r in records.select(OTHER, CompletionFilter(), limit=None)] == ["cc_x"]


def test_completion_metadata_is_replaced_and_a_completion_deleted(store: Store) -> None:
    records: CompletionRecords = store.completions
    records.insert(completion("cc_1", topic="geo"))
    with pytest.raises(CompletionNotFound):
        records.update_metadata("cc_1", OTHER, {"topic": "x"})
    updated = records.update_metadata("cc_1", ORG, {"topic": "math", "level": "1"})
    assert updated.metadata == {"topic": "math", "level": "1"} == records.get("cc_1", ORG).metadata
    assert records.select(ORG, CompletionFilter(metadata={"topic": "geo"}), limit=None) == []
    assert [r.id for r in records.select(ORG, CompletionFilter(metadata={"level": "1"}), limit=None)] == ["cc_1"]
    assert records.update_metadata("cc_1", ORG, None).metadata is None
    assert records.select(ORG, CompletionFilter(metadata={"level": "1"}), limit=None) == []
    with pytest.raises(CompletionNotFound):
        records.delete("cc_1", OTHER)
    records.delete("cc_1", ORG)
    with pytest.raises(CompletionNotFound):
        records.get("cc_1", ORG)
    with pytest.raises(CompletionNotFound):
        records.delete("cc_1", ORG)
    assert records.page(ORG, CompletionFilter(), after=None, limit=10, order="asc") == ([], False)


# -- evals -------------------------------------------------------------------------------------------
def an_eval(eval_id: str, *, organization_id: str = ORG) -> EvalRow:
    return EvalRow(
        id=eval_id,
        organization_id=organization_id,
        name=f"eval {eval_id}",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=[{"type": "string_check", "name": "exact"}],
        created_at=int(time.time()),
    )


def a_run(run_id: str, eval_id: str = "eval_1", *, status: str = QUEUED, **extra: Any) -> EvalRunRow:
    return EvalRunRow(
        id=run_id,
        eval_id=eval_id,
        organization_id=extra.pop("organization_id", ORG),
        name=f"run {run_id}",
        status=status,
        data_source={"type": "jsonl"},
        created_at=int(time.time()),
        **extra,
    )


def an_item(item_id: str, run_id: str, index: int, status: str = "pass") -> OutputItemRow:
    return OutputItemRow(
        id=item_id,
        run_id=run_id,
        eval_id="eval_1",
        datasource_item_id=index,
        datasource_item={"question": str(index)},
        status=status,
        results=[{"name": "exact", "passed": status == "pass"}],
        sample={"model": "m"},
        created_at=int(time.time()),
    )


def test_evals_are_scoped_paged_updated_and_deleted_with_their_runs(store: Store) -> None:
    evals: EvalRecords = store.evals
    for n in (1, 2, 3):
        evals.insert_eval(an_eval(f"eval_{n}"))
    evals.insert_eval(an_eval("eval_x", organization_id=OTHER))

    def ids(**page: Any) -> tuple[list[str], bool]:
        rows, more = evals.list_evals(ORG, **{"after": None, "limit": 2, "order": "asc", **page})
        return [r.id for r in rows], more

    assert ids() == (["eval_1", "eval_2"], True)
    assert ids(after="eval_2") == (["eval_3"], False)
    assert ids(order="desc") == (["eval_3", "eval_2"], True)
    assert ids(order="desc", after="eval_2") == (["eval_1"], False)
    assert ids(after="eval_x") == (["eval_1", "eval_2"], True)
    with pytest.raises(EvalNotFound):
        evals.get_eval("eval_1", OTHER)
    with pytest.raises(EvalNotFound):
        evals.update_eval("eval_1", OTHER, name="stolen")
    updated = evals.update_eval("eval_1", ORG, name="renamed", metadata={"k": "v"})
    assert (updated.name, updated.metadata) == ("renamed", {"k": "v"}) and evals.get_eval("eval_1", ORG) == updated
    evals.insert_run(a_run("run_1"))
    assert evals.add_output_item(an_item("item_1", "run_1", 0))
    with pytest.raises(EvalNotFound):
        evals.delete_eval("eval_1", OTHER)
    evals.delete_eval("eval_1", ORG)
    with pytest.raises(EvalNotFound):
        evals.get_eval("eval_1", ORG)
    with pytest.raises(EvalRunNotFound):
        evals.get_run("run_1", ORG)
    assert evals.all_output_items("run_1") == [] and evals.graded_item_ids("run_1") == set()


def test_runs_are_listed_by_eval_and_status_cancelled_and_deleted(store: Store) -> None:
    evals: EvalRecords = store.evals
    evals.insert_eval(an_eval("eval_1"))
    evals.insert_run(a_run("run_1"))
    evals.insert_run(a_run("run_2", status=COMPLETED))
    evals.insert_run(a_run("run_other_eval", "eval_2"))
    evals.insert_run(a_run("run_3"))
    page, more = evals.list_runs("eval_1", after=None, limit=2, order="desc")
    assert ([r.id for r in page], more) == (["run_3", "run_2"], True)
    page, more = evals.list_runs("eval_1", after="run_2", limit=2, order="desc")
    assert ([r.id for r in page], more) == (["run_1"], False)
    page, _ = evals.list_runs("eval_1", after=None, limit=10, order="asc", status=QUEUED)
    assert [r.id for r in page] == ["run_1", "run_3"]
    page, _ = evals.list_runs("eval_1", after="run_other_eval", limit=1, order="asc")  # not this eval's cursor
    assert [r.id for r in page] == ["run_1"]
    with pytest.raises(EvalRunNotFound):
        evals.get_run("run_1", ORG, "eval_2")
    with pytest.raises(EvalRunNotFound):
        evals.get_run("run_1", OTHER)
    with pytest.raises(EvalRunNotFound):
        evals.cancel_run("run_1", OTHER, "eval_1")
    cancelled = evals.cancel_run("run_1", ORG, "eval_1")
    assert cancelled.status == CANCELED and cancelled.finished_at is not None
    assert evals.cancel_run("run_2", ORG, "eval_1").status == COMPLETED  # a finished run stays as it is
    evals.add_output_item(an_item("item_1", "run_1", 0))
    with pytest.raises(EvalRunNotFound):
        evals.delete_run("run_1", OTHER, "eval_1")
    evals.delete_run("run_1", ORG, "eval_1")
    with pytest.raises(EvalRunNotFound):
        evals.get_run("run_1", ORG)
    assert evals.all_output_items("run_1") == []
    assert evals.get_run("run_3", ORG, "eval_1").status == QUEUED


def test_the_run_queue_hands_out_a_run_once_and_takes_over_only_stale_ones(store: Store) -> None:
    evals: EvalRecords = store.evals
    now = time.time()
    evals.insert_run(a_run("run_unbeaten", status=IN_PROGRESS, worker_id="w0"))  # NULL heartbeat: never stale
    evals.insert_run(a_run("run_1"))
    evals.insert_run(a_run("run_2"))
    first = evals.claim_run("w1", stale_before=now - 30)
    assert first is not None and (first.id, first.status, first.worker_id, first.attempts) == (
        "run_1",
        IN_PROGRESS,
        "w1",
        1,
    )
    assert first.started_at is not None and first.heartbeat_at is not None
    second = evals.claim_run("w2", stale_before=now - 30)
    assert second is not None and second.id == "run_2"
    assert evals.claim_run("w3", stale_before=now - 30) is None
    # Only the holder heartbeats and finishes; a finished run is no longer held.
    assert evals.hold_run("run_1", "w1", result_counts={"total": 1, "passed": 1, "failed": 0, "errored": 0})
    assert not evals.hold_run("run_1", "w2")
    assert evals.get_run("run_1", ORG).result_counts["total"] == 1
    assert evals.finish_run("run_1", "w1", COMPLETED, per_model_usage=[{"model_name": "m"}])
    finished = evals.get_run("run_1", ORG)
    assert (finished.status, finished.per_model_usage, finished.finished_at is not None) == (
        COMPLETED,
        [{"model_name": "m"}],
        True,
    )
    assert not evals.hold_run("run_1", "w1") and not evals.finish_run("run_1", "w1", COMPLETED)
    # A run whose holder went silent is taken over: one more attempt, the first start kept.
    taken = evals.claim_run("w3", stale_before=time.time() + 60)
    assert taken is not None and (taken.id, taken.worker_id, taken.attempts) == ("run_2", "w3", 2)
    assert taken.started_at == second.started_at
    assert not evals.hold_run("run_2", "w2")  # the former holder writes nothing more
    # A cancelled run loses its hold.
    evals.cancel_run("run_2", ORG, "eval_1")
    assert not evals.hold_run("run_2", "w3")
    assert evals.claim_run("w4", stale_before=time.time() + 60) is None


def test_a_run_has_one_output_item_per_data_source_item_paged_by_status(store: Store) -> None:
    evals: EvalRecords = store.evals
    for n, index, status in ((0, 2, "pass"), (1, 0, "fail"), (2, 1, "pass"), (3, 3, "error")):
        assert evals.add_output_item(an_item(f"item_{n}", "run_1", index, status))
    assert not evals.add_output_item(an_item("item_again", "run_1", 2, "fail"))  # item 2 is graded already
    assert evals.add_output_item(an_item("item_other", "run_2", 0))
    assert evals.graded_item_ids("run_1") == {0, 1, 2, 3}
    everything = evals.all_output_items("run_1")
    assert [i.datasource_item_id for i in everything] == [0, 1, 2, 3]
    assert everything[2].id == "item_0" and everything[2].status == "pass"
    page, more = evals.list_output_items("run_1", after=None, limit=2, order="asc")
    assert ([i.id for i in page], more) == (["item_0", "item_1"], True)
    page, more = evals.list_output_items("run_1", after="item_1", limit=2, order="asc")
    assert ([i.id for i in page], more) == (["item_2", "item_3"], False)
    page, more = evals.list_output_items("run_1", after=None, limit=10, order="desc", status="pass")
    assert ([i.id for i in page], more) == (["item_2", "item_0"], False)
    page, _ = evals.list_output_items("run_1", after="item_other", limit=1, order="asc")  # another run's cursor
    assert [i.id for i in page] == ["item_0"]
    assert evals.get_output_item("item_3", "run_1").status == "error"
    with pytest.raises(OutputItemNotFound):
        evals.get_output_item("item_other", "run_1")


def test_every_record_store_has_every_method_of_its_protocol(tmp_path: Path) -> None:
    sql = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    protocols = {"responses": ResponseRecords, "evals": EvalRecords, "completions": CompletionRecords}
    for implementation in (sql, InMemoryStore()):
        for attribute, protocol in protocols.items():
            records = getattr(implementation, attribute)
            missing = [n for n in vars(protocol) if not n.startswith("_") and not hasattr(records, n)]
            assert not missing, f"{type(records).__name__}: {missing}"
    sql.engine.dispose()
