"""The one writer of job status, on real SQLite and PostgreSQL: a move happens with its events and
webhook outbox rows in one transaction or not at all, forbidden moves raise, and a worker whose claim
is gone (wrong worker, taken over, cancelled) changes nothing."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from job_rows import job_row
from openft.jobs import status as st
from openft.jobs.claim import Claim
from openft.jobs.recovery import LineEvents
from openft.jobs.transitions import IllegalTransition, NewEvent, fail, release, transition
from openft.settings import Settings
from openft.store import Store, open_store
from openft.store import schema as s
from openft.store.recovery import add_checkpoint_once, delete_checkpoints
from openft.store.rows import CheckpointRow
from openft.store.webhooks import WebhookEndpointRow

pytestmark = pytest.mark.integration
ORG = "org-acme"


@pytest.fixture
def store(settings: Settings) -> Store:
    settings.ensure_dirs()
    return open_store(settings.sqlalchemy_url)


def _job(store: Store, job_id: str, status: str, **extra: object) -> str:
    store.insert_job(job_row(job_id, status, organization_id=ORG, **extra))
    return job_id


def _endpoint(store: Store, endpoint_id: str, events: list[str] | None = None) -> None:
    store.webhooks.add_endpoint(
        WebhookEndpointRow(
            id=endpoint_id,
            organization_id=ORG,
            url="https://hooks.example/x",
            secret="whsec_AAAA",
            created_at=0,
            events=events,
        )
    )


def _messages(store: Store, job_id: str) -> list[str]:
    return [e.message for e in reversed(store.list_events(job_id, limit=100)[0])]


def _deliveries(store: Store) -> list[tuple[str, str]]:
    t = s.webhook_deliveries
    with store.engine.connect() as conn:
        return [(r.endpoint_id, r.event_type) for r in conn.execute(select(t).order_by(t.c.seq))]


def test_a_terminal_move_writes_status_events_and_outbox_rows(store: Store) -> None:
    _endpoint(store, "we_all")
    _endpoint(store, "we_failed_only", events=["fine_tuning.job.failed"])
    job_id = _job(store, "ftjob-term0001", st.RUNNING, worker_id="w1")
    assert transition(
        store,
        job_id,
        st.SUCCEEDED,
        expect=st.RUNNING,
        worker="w1",
        events=["New fine-tuned model created: m", NewEvent("The job has successfully completed")],
        fine_tuned_model="m",
        trained_tokens=42,
    )
    job = store.get_job(job_id)
    assert (job.status, job.fine_tuned_model, job.trained_tokens) == (st.SUCCEEDED, "m", 42)
    assert _messages(store, job_id) == ["New fine-tuned model created: m", "The job has successfully completed"]
    assert _deliveries(store) == [("we_all", "fine_tuning.job.succeeded")]
    # A non-terminal move queues no webhook.
    _job(store, "ftjob-term0002", st.VALIDATING)
    assert transition(store, "ftjob-term0002", st.QUEUED, expect=st.VALIDATING, events=["validated"])
    assert _deliveries(store) == [("we_all", "fine_tuning.job.succeeded")]


def test_a_failure_after_the_status_write_leaves_nothing_behind(store: Store) -> None:
    _endpoint(store, "we_all")
    job_id = _job(store, "ftjob-atom0001", st.RUNNING, worker_id="w1")
    # The event insert fails after the UPDATE of the job ran: the whole change is rolled back.
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error for an unserialisable value
        transition(
            store, job_id, st.FAILED, expect=st.RUNNING, worker="w1", events=[NewEvent("x", data={"bad": object()})]
        )
    assert store.get_job(job_id).status == st.RUNNING and _messages(store, job_id) == []
    # The outbox insert fails (its table is gone) after the status and events were written: same.
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE webhook_deliveries"))
    with pytest.raises(Exception):  # noqa: B017 - no such table, in each database's words
        fail(store, job_id, {"code": "c", "message": "boom", "param": None}, expect=st.RUNNING, worker="w1")
    job = store.get_job(job_id)
    assert (job.status, job.error, job.finished_at) == (st.RUNNING, None, None)
    assert _messages(store, job_id) == []


def test_forbidden_moves_raise_and_change_nothing(store: Store) -> None:
    job_id = _job(store, "ftjob-forb0001", st.VALIDATING)
    for target, expect in [
        (st.RUNNING, st.VALIDATING),
        (st.QUEUED, st.SUCCEEDED),
        (st.PAUSED, (st.RUNNING, st.VALIDATING)),
        (st.QUEUED, ()),
    ]:
        with pytest.raises(IllegalTransition):
            transition(store, job_id, target, expect=expect, events=["never"])
    assert store.get_job(job_id).status == st.VALIDATING and _messages(store, job_id) == []


def test_a_wrong_worker_or_status_changes_nothing(store: Store) -> None:
    _endpoint(store, "we_all")
    job_id = _job(store, "ftjob-cas00001", st.RUNNING, worker_id="w1", heartbeat_at=time.time())
    assert not transition(store, job_id, st.SUCCEEDED, expect=st.RUNNING, worker="w2", events=["no"])
    assert not transition(store, job_id, st.QUEUED, expect=st.PAUSED, events=["no"])
    # A take-back for silence loses to a heartbeat that came in after the job was read.
    assert not fail(
        store, job_id, {"code": "c", "message": "no", "param": None}, expect=st.RUNNING, worker="w1", stale_before=0
    )
    assert not release(store, job_id, expect=st.RUNNING, worker="w1", stale_before=time.time() - 60)
    job = store.get_job(job_id)
    assert (job.status, job.worker_id) == (st.RUNNING, "w1")
    assert _messages(store, job_id) == [] and _deliveries(store) == []
    with pytest.raises(TypeError):
        store.update_job(job_id, status=st.SUCCEEDED)
    assert store.get_job(job_id).status == st.RUNNING


def test_racing_moves_have_one_winner_with_one_event_and_one_outbox_row(store: Store) -> None:
    _endpoint(store, "we_all")
    job_id = _job(store, "ftjob-race0001", st.RUNNING, worker_id="w1")
    results: list[bool] = []
    start = threading.Barrier(6)

    def cancel() -> None:
        start.wait()
        results.append(transition(store, job_id, st.CANCELLED, expect=st.sources_of(st.CANCELLED), events=["c"]))

    def succeed() -> None:
        start.wait()
        results.append(transition(store, job_id, st.SUCCEEDED, expect=st.RUNNING, worker="w1", events=["s"]))

    threads = [threading.Thread(target=f) for f in [cancel] * 3 + [succeed] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    status = store.get_job(job_id).status
    assert _messages(store, job_id) == ["c" if status == st.CANCELLED else "s"]
    assert _deliveries(store) == [("we_all", f"fine_tuning.job.{status}")]


def _checkpoint(job_id: str, step: int) -> CheckpointRow:
    return CheckpointRow(
        id=f"ftckpt-{job_id[-4:]}{step}",
        job_id=job_id,
        organization_id=ORG,
        created_at=0,
        step_number=step,
        fine_tuned_model_checkpoint=f"ft:x:ckpt-step-{step}",
        metrics={},
        adapter_path="jobs/x",
    )


def test_a_worker_whose_job_was_taken_over_writes_nothing_more(store: Store) -> None:
    timeout = 30.0
    job_id = _job(store, "ftjob-stal0001", st.RUNNING, worker_id="w-old", heartbeat_at=time.time() - 2 * timeout)
    stale = LineEvents(store, job_id, "w-old")
    assert add_checkpoint_once(store, _checkpoint(job_id, 3), held_by="w-old", statuses=[st.RUNNING])
    # Another worker takes the job from the silent one.
    taken = store.claim_next_job("w-new", st.RUNNING, stale_before=time.time() - timeout)
    assert taken is not None and taken.worker_id == "w-new"
    line = {"kind": "metrics", "step": 4}
    assert not stale.append(line, "Step 4/9: training loss=1.00", type="metrics")
    assert not add_checkpoint_once(store, _checkpoint(job_id, 6), held_by="w-old", statuses=[st.RUNNING])
    assert not delete_checkpoints(store, job_id, held_by="w-old", statuses=[st.RUNNING])
    assert not store.update_job(job_id, expect_status=st.RUNNING, expect_worker="w-old", estimated_finish=1)
    assert not Claim(store, job_id, "w-old", every=1.0).beat()
    assert not transition(store, job_id, st.SUCCEEDED, expect=st.RUNNING, worker="w-old", trained_tokens=1)
    job = store.get_job(job_id)
    assert (job.status, job.worker_id, job.estimated_finish, job.trained_tokens) == (st.RUNNING, "w-new", None, None)
    assert [c.step_number for c in store.list_checkpoints(job_id)[0]] == [3]
    # The new holder's writes go through, and a cancelled job takes none from anyone.
    assert LineEvents(store, job_id, "w-new").append(line, "Step 4/9: training loss=1.00", type="metrics")
    assert transition(store, job_id, st.CANCELLED, expect=st.RUNNING, events=["Fine-tuning job cancelled"])
    assert not LineEvents(store, job_id, "w-new").append({"kind": "message", "t": 1}, "late")
    assert not Claim(store, job_id, "w-new", every=1.0).beat()
    assert _messages(store, job_id) == ["Step 4/9: training loss=1.00", "Fine-tuning job cancelled"]


def test_an_endpoint_of_another_organization_gets_no_outbox_row(store: Store) -> None:
    store.webhooks.add_endpoint(
        WebhookEndpointRow(id="we_other", organization_id="org-other", url="https://x", secret="whsec_A", created_at=0)
    )
    job_id = _job(store, "ftjob-orgs0001", st.QUEUED)
    assert transition(store, job_id, st.CANCELLED, expect=st.QUEUED)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.webhook_deliveries)).scalar_one() == 0
