"""One contract for every Store: the in-memory twin, SQLite and PostgreSQL pass the same tests.

What the services above rely on: ids are unique (Conflict), reads are scoped by organization, pages are
newest first with cursors, the queue hands out the oldest free job once, compare-and-set writes change
nothing when their conditions fail, a job change carries its events and webhook outbox rows or nothing,
a worker's conditional writes stop once it no longer holds the job, and the satellite records (API keys,
permissions, uploads, webhooks) behave alike. Responses, evals and stored completions have their own
suite, ``test_record_store_contract.py``, on the same fixtures (``tests/store_backends.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from job_rows import job_row
from openft.errors import FileNotFound, JobNotFound, NotFound
from openft.store import Conflict, InMemoryStore, Store, open_store
from openft.store.base import JobChange, NewEvent, WebhookEvent
from openft.store.keys import KeyStore
from openft.store.permissions import PermissionStore
from openft.store.rows import CheckpointRow, FileRow
from openft.store.uploads import UploadPartRow, UploadRow
from openft.store.webhooks import DELIVERED, PENDING, WebhookEndpointNotFound, WebhookEndpointRow
from store_backends import backend_fixture, store_fixture  # noqa: F401  # every test runs on each backend

pytestmark = pytest.mark.integration
ORG, OTHER = "org-a", "org-b"


def file_row(file_id: str, *, organization_id: str = ORG, purpose: str = "fine-tune", **extra: object) -> FileRow:
    return FileRow(
        id=file_id,
        organization_id=organization_id,
        filename=f"{file_id}.jsonl",
        purpose=purpose,
        bytes=10,
        created_at=int(time.time()),
        blob_path=f"files/{file_id}",
        **extra,  # type: ignore[arg-type]
    )


def checkpoint(job_id: str, step: int, *, organization_id: str = ORG) -> CheckpointRow:
    return CheckpointRow(
        id=f"ftckpt-{job_id}-{step}",
        job_id=job_id,
        organization_id=organization_id,
        created_at=int(time.time()),
        step_number=step,
        fine_tuned_model_checkpoint=f"ft:m:{job_id}:ckpt-step-{step}",
        metrics={"step": step},
        adapter_path=f"jobs/{job_id}/checkpoint-{step}",
    )


# -- files -------------------------------------------------------------------------------------------
def test_files_are_scoped_by_organization_and_unique(store: Store) -> None:
    store.insert_file(file_row("file-1"))
    assert store.get_file("file-1").organization_id == ORG
    assert store.get_file("file-1", ORG).blob_path == "files/file-1"
    with pytest.raises(FileNotFound):
        store.get_file("file-1", OTHER)
    with pytest.raises(FileNotFound):
        store.get_file("file-none")
    with pytest.raises(Conflict):
        store.insert_file(file_row("file-1"))
    with pytest.raises(FileNotFound):
        store.delete_file("file-1", OTHER)
    assert store.delete_file("file-1", ORG).id == "file-1"
    with pytest.raises(FileNotFound):
        store.get_file("file-1")


def test_file_pages_in_both_orders_with_a_cursor_and_a_purpose(store: Store) -> None:
    for n in range(5):
        store.insert_file(file_row(f"file-{n}", purpose="fine-tune" if n % 2 == 0 else "batch"))
    store.insert_file(file_row("file-x", organization_id=OTHER))
    rows, more = store.list_files(ORG, limit=2)
    assert [r.id for r in rows] == ["file-4", "file-3"] and more
    rows, more = store.list_files(ORG, limit=2, after="file-3")
    assert [r.id for r in rows] == ["file-2", "file-1"] and more
    rows, more = store.list_files(ORG, limit=10, order="asc", after="file-2")
    assert [r.id for r in rows] == ["file-3", "file-4"] and not more
    assert [r.id for r in store.list_files(ORG, purpose="batch")[0]] == ["file-3", "file-1"]
    assert [r.id for r in store.list_files(ORG, after="file-unknown")[0]] == [f"file-{n}" for n in (4, 3, 2, 1, 0)]


def test_a_file_is_gone_from_its_expiry_and_swept_by_it(store: Store) -> None:
    now = time.time()
    store.insert_file(file_row("file-old", expires_at=int(now) - 100))
    store.insert_file(file_row("file-older", expires_at=int(now) - 200))
    store.insert_file(file_row("file-later", expires_at=int(now) + 3600))
    store.insert_file(file_row("file-never"))
    with pytest.raises(FileNotFound):
        store.get_file("file-old")
    assert {r.id for r in store.list_files(ORG)[0]} == {"file-later", "file-never"}
    assert store.expired_files(now, 10) == [("file-older", "files/file-older"), ("file-old", "files/file-old")]
    assert store.expired_files(now, 1) == [("file-older", "files/file-older")]
    assert store.delete_expired_files(["file-old", "file-later", "file-none"], now) == 1
    assert store.expired_files(now, 10) == [("file-older", "files/file-older")]
    assert store.delete_expired_files([], now) == 0


# -- jobs --------------------------------------------------------------------------------------------
def test_jobs_are_scoped_by_organization_unique_and_copied(store: Store) -> None:
    store.insert_job(job_row("ftjob-1", "validating_files", organization_id=ORG, metadata={"k": "v"}))
    job = store.get_job("ftjob-1", ORG)
    assert job.metadata == {"k": "v"} and job.worker_id is None and job.attempts == 0 and not job.model_deleted
    job.metadata["k"] = "changed"  # type: ignore[index]
    assert store.get_job("ftjob-1").metadata == {"k": "v"}
    with pytest.raises(JobNotFound):
        store.get_job("ftjob-1", OTHER)
    with pytest.raises(JobNotFound):
        store.get_job("ftjob-none")
    with pytest.raises(Conflict):
        store.insert_job(job_row("ftjob-1", "queued"))


def test_job_pages_are_newest_first_and_filter_on_metadata(store: Store) -> None:
    for n in range(5):
        store.insert_job(job_row(f"ftjob-{n}", "queued", metadata={"parity": str(n % 2), "all": "yes"}))
    store.insert_job(job_row("ftjob-x", "queued", organization_id=OTHER))
    rows, more = store.list_jobs("org-personal", limit=3)
    assert [r.id for r in rows] == ["ftjob-4", "ftjob-3", "ftjob-2"] and more
    rows, more = store.list_jobs("org-personal", limit=3, after="ftjob-2")
    assert [r.id for r in rows] == ["ftjob-1", "ftjob-0"] and not more
    rows, _ = store.list_jobs("org-personal", metadata={"parity": "1", "all": "yes"})
    assert [r.id for r in rows] == ["ftjob-3", "ftjob-1"]
    assert store.list_jobs("org-personal", metadata={"parity": "2"}) == ([], False)
    assert store.count_jobs("org-personal", ["queued", "running"]) == 5
    assert store.count_jobs(OTHER, ["running"]) == 0


def test_update_job_is_a_compare_and_set_that_never_touches_status(store: Store) -> None:
    store.insert_job(job_row("ftjob-1", "running", worker_id="w1"))
    assert not store.update_job("ftjob-1", expect_status="queued", trained_tokens=5)
    assert not store.update_job("ftjob-1", expect_worker="w2", trained_tokens=5)
    assert not store.update_job("ftjob-none", trained_tokens=5)
    assert store.update_job("ftjob-1", expect_status=["queued", "running"], expect_worker="w1", trained_tokens=7)
    assert store.get_job("ftjob-1").trained_tokens == 7
    with pytest.raises(TypeError):
        store.update_job("ftjob-1", status="succeeded")


def test_change_job_writes_status_events_and_webhooks_together_or_nothing(store: Store) -> None:
    store.webhooks.add_endpoint(WebhookEndpointRow("we_all", "org-personal", "https://a.example", "whsec_x", 1))
    store.webhooks.add_endpoint(
        WebhookEndpointRow("we_failed", "org-personal", "https://b.example", "whsec_x", 1, ["fine_tuning.job.failed"])
    )
    store.webhooks.add_endpoint(WebhookEndpointRow("we_other", OTHER, "https://c.example", "whsec_x", 1))
    store.insert_job(job_row("ftjob-1", "running", worker_id="w1", heartbeat_at=time.time()))
    succeed = JobChange(
        expect_status=("running",),
        worker_id="w1",
        status="succeeded",
        values={"fine_tuned_model": "ft:x", "worker_id": None},
        events=(NewEvent("done"), NewEvent("really", level="warn")),
        webhook=WebhookEvent("fine_tuning.job.succeeded", "evt_1", '{"id":"evt_1"}'),
    )
    assert store.change_job("ftjob-1", JobChange(expect_status=("queued",), status="running")) is None
    assert store.change_job("ftjob-1", JobChange(expect_status=("running",), worker_id="w2", status="failed")) is None
    silent = JobChange(expect_status=("running",), stale_before=time.time() - 60, status="queued")
    assert store.change_job("ftjob-1", silent) is None
    assert store.count_events("ftjob-1") == 0
    job = store.change_job("ftjob-1", succeed)
    assert job is not None and job.status == "succeeded" and job.fine_tuned_model == "ft:x" and job.worker_id is None
    assert [(e.message, e.level) for e in store.list_events("ftjob-1")[0]] == [("really", "warn"), ("done", "info")]
    assert [d.endpoint_id for d in store.webhooks.list_deliveries("we_all")] == ["we_all"]
    assert store.webhooks.list_deliveries("we_failed") == [] and store.webhooks.list_deliveries("we_other") == []
    assert store.change_job("ftjob-1", succeed) is None
    with pytest.raises(TypeError):
        store.change_job("ftjob-1", JobChange(expect_status=("succeeded",), values={"status": "failed"}))


def test_change_job_takes_a_job_from_a_silent_worker_only(store: Store) -> None:
    now = time.time()
    store.insert_job(job_row("ftjob-1", "running", worker_id="w1", heartbeat_at=now - 100))
    store.insert_job(job_row("ftjob-2", "running", worker_id="w1", heartbeat_at=now))
    take = JobChange(expect_status=("running",), worker_id="w1", stale_before=now - 50, status="queued")
    assert store.change_job("ftjob-2", take) is None
    taken = store.change_job("ftjob-1", JobChange(**{**take.__dict__, "values": {"worker_id": None}}))
    assert taken is not None and taken.status == "queued" and taken.worker_id is None


def test_the_queue_hands_out_the_oldest_free_job_once(store: Store) -> None:
    now = time.time()
    store.insert_job(job_row("ftjob-held", "queued", worker_id="w0", heartbeat_at=now))
    store.insert_job(job_row("ftjob-a", "queued"))
    store.insert_job(job_row("ftjob-b", "queued"))
    store.insert_job(job_row("ftjob-v", "validating_files"))
    first = store.claim_next_job("w1", "queued", to_status="running", now=now)
    assert first is not None and (first.id, first.status, first.worker_id, first.heartbeat_at) == (
        "ftjob-a",
        "running",
        "w1",
        now,
    )
    second = store.claim_next_job("w2", "queued", now=now)
    assert second is not None and (second.id, second.status) == ("ftjob-b", "queued")
    assert store.claim_next_job("w3", "queued", now=now, stale_before=now - 10) is None
    stolen = store.claim_next_job("w3", "queued", now=now + 100, stale_before=now + 50)
    assert stolen is not None and stolen.id == "ftjob-held" and stolen.worker_id == "w3"
    assert store.get_job("ftjob-a").worker_id == "w1"


def test_a_held_job_without_a_heartbeat_is_never_stale(store: Store) -> None:
    store.insert_job(job_row("ftjob-1", "queued", worker_id="w0"))
    assert store.claim_next_job("w1", "queued", stale_before=time.time() + 1000) is None
    assert [j.id for j in store.held_jobs(["queued"])] == ["ftjob-1"]
    assert store.held_jobs(["running"]) == []


def test_fine_tuned_models_are_found_until_deleted(store: Store) -> None:
    store.insert_job(job_row("ftjob-1", "succeeded", fine_tuned_model="ft:one"))
    store.insert_job(job_row("ftjob-2", "running"))
    store.insert_job(job_row("ftjob-3", "succeeded", fine_tuned_model="ft:three"))
    store.insert_job(job_row("ftjob-4", "succeeded", fine_tuned_model="ft:four", organization_id=OTHER))
    found = store.find_job_by_model("ft:one")
    assert found is not None and found.id == "ftjob-1"
    assert [j.id for j in store.list_fine_tuned_jobs("org-personal")] == ["ftjob-1", "ftjob-3"]
    assert store.update_job("ftjob-1", model_deleted=True)
    assert store.find_job_by_model("ft:one") is None and store.find_job_by_model("ft:none") is None
    assert [j.id for j in store.list_fine_tuned_jobs("org-personal")] == ["ftjob-3"]


# -- events ------------------------------------------------------------------------------------------
def test_event_pages_are_newest_first(store: Store) -> None:
    written = [store.append_event("ftjob-1", f"m{n}", data={"n": n}) for n in range(5)]
    store.append_event("ftjob-2", "other")
    old = store.append_event("ftjob-1", "dated", created_at=1234, level="warn", type="metrics")
    assert (old.created_at, old.level, old.type) == (1234, "warn", "metrics")
    rows, more = store.list_events("ftjob-1", limit=3)
    assert [e.message for e in rows] == ["dated", "m4", "m3"] and more
    rows, more = store.list_events("ftjob-1", limit=3, after=rows[-1].id)
    assert [e.message for e in rows] == ["m2", "m1", "m0"] and not more
    assert rows[-1].data == {"n": 0} and rows[-1].id == written[0].id and rows[-1].seq == written[0].seq
    assert store.count_events("ftjob-1") == 6
    assert store.event_ids("ftjob-2") == {e.id for e in store.list_events("ftjob-2")[0]}


def test_an_event_once_is_written_once_and_only_while_held(store: Store) -> None:
    store.insert_job(job_row("ftjob-1", "running", worker_id="w1"))
    event = NewEvent("Step 1", type="metrics", data={"step": 1})
    assert store.add_event_once("ftjob-1", event, event_id="ftevent-a", held_by="w1", statuses=["running"])
    assert not store.add_event_once("ftjob-1", event, event_id="ftevent-a", held_by="w1", statuses=["running"])
    assert not store.add_event_once("ftjob-1", event, event_id="ftevent-b", held_by="w2", statuses=["running"])
    assert not store.add_event_once("ftjob-1", event, event_id="ftevent-c", held_by="w1", statuses=["queued"])
    assert store.event_ids("ftjob-1") == {"ftevent-a"}


# -- checkpoints -------------------------------------------------------------------------------------
def test_checkpoints_page_newest_first_and_are_unique_by_model_name(store: Store) -> None:
    for step in (1, 2, 3):
        store.add_checkpoint(checkpoint("ftjob-1", step))
    with pytest.raises(Conflict):
        store.add_checkpoint(checkpoint("ftjob-1", 3))
    rows, more = store.list_checkpoints("ftjob-1", limit=2)
    assert [c.step_number for c in rows] == [3, 2] and more
    rows, more = store.list_checkpoints("ftjob-1", limit=2, after=rows[-1].id)
    assert [c.step_number for c in rows] == [1] and not more and rows[0].metrics == {"step": 1}
    found = store.get_checkpoint_by_model("ft:m:ftjob-1:ckpt-step-2")
    assert found is not None and found.step_number == 2
    assert store.get_checkpoint_by_model("ft:none") is None


def test_a_worker_writes_checkpoints_only_while_it_holds_the_job(store: Store) -> None:
    store.insert_job(job_row("ftjob-1", "running", worker_id="w1"))
    assert store.add_checkpoint_once(checkpoint("ftjob-1", 1), held_by="w1", statuses=["running"])
    again = checkpoint("ftjob-1", 1)
    again.id, again.fine_tuned_model_checkpoint = "ftckpt-again", "ft:again"
    assert not store.add_checkpoint_once(again, held_by="w1", statuses=["running"])
    assert not store.add_checkpoint_once(checkpoint("ftjob-1", 2), held_by="w2", statuses=["running"])
    assert store.add_checkpoint_once(checkpoint("ftjob-1", 2), held_by="w1", statuses=["running"])
    assert not store.delete_checkpoints("ftjob-1", held_by="w2", statuses=["running"])
    assert store.delete_checkpoints("ftjob-1", held_by="w1", statuses=["running"], step=1)
    assert [c.step_number for c in store.list_checkpoints("ftjob-1")[0]] == [2]
    assert store.delete_checkpoints("ftjob-1", held_by="w1", statuses=["running"])
    assert store.list_checkpoints("ftjob-1") == ([], False)


def test_organization_checkpoints_leave_out_deleted_models_and_other_organizations(store: Store) -> None:
    store.insert_job(job_row("ftjob-1", "succeeded", organization_id=ORG))
    store.insert_job(job_row("ftjob-2", "succeeded", organization_id=ORG))
    store.add_checkpoint(checkpoint("ftjob-1", 1))
    store.add_checkpoint(checkpoint("ftjob-2", 1))
    store.add_checkpoint(checkpoint("ftjob-1", 2))
    store.add_checkpoint(checkpoint("ftjob-orphan", 1))
    store.add_checkpoint(checkpoint("ftjob-1", 3, organization_id=OTHER))
    store.update_job("ftjob-2", model_deleted=True)
    assert [c.id for c in store.list_organization_checkpoints(ORG)] == ["ftckpt-ftjob-1-1", "ftckpt-ftjob-1-2"]


def test_local_models_are_registered_again_under_the_same_id(store: Store) -> None:
    store.add_local_model("local/a", "/models/a")
    store.add_local_model("local/a", "/models/a2")
    store.add_local_model("local/b", "/models/b")
    assert store.local_models() == {"local/a": "/models/a2", "local/b": "/models/b"}


# -- satellite records -------------------------------------------------------------------------------
def test_api_keys_are_found_by_hash_listed_and_revoked(store: Store) -> None:
    keys = KeyStore(store)
    assert not keys.any_configured()
    first, secret = keys.create("org-a", "proj", "ci")
    second, _ = keys.create("org-b")
    found = keys.find(secret)
    assert found is not None and found.id == first.id and found.project_id == "proj" and found.name == "ci"
    assert keys.find(secret + "x") is None
    assert [k.id for k in keys.list()] == [first.id, second.id]
    assert [k.id for k in keys.list("org-b")] == [second.id]
    assert keys.revoke(first.id).revoked_at is not None
    with pytest.raises(NotFound):
        keys.revoke(first.id)
    assert keys.find(secret) is None and keys.any_configured()
    assert [k.id for k in keys.list("org-a", include_revoked=True)] == [first.id]
    assert keys.list("org-a") == []


def test_permissions_are_one_per_project_of_an_organization(store: Store) -> None:
    permissions = PermissionStore(store)
    granted = permissions.grant("ft:m", [("org-a", "p1"), ("org-b", "p1"), ("org-a", "p1")])
    assert [(p.organization_id, p.project_id) for p in granted] == [("org-a", "p1"), ("org-b", "p1")]
    again = permissions.grant("ft:m", [("org-b", "p1"), ("org-a", "p2")])
    assert again[0].id == granted[1].id
    assert [p.project_id for p in permissions.list("ft:m", newest_first=True)] == ["p2", "p1", "p1"]
    assert [p.id for p in permissions.list("ft:m", grantee=("org-b", "p1"))] == [granted[1].id]
    assert permissions.allows("ft:m", "org-a", "p1") and not permissions.allows("ft:m", "org-c", "p1")
    permissions.grant("ft:n", [("org-a", "p1")])
    assert [p.fine_tuned_model_checkpoint for p in permissions.shared_with("org-a", "p1")] == ["ft:m", "ft:n"]
    assert not permissions.revoke("ft:n", granted[0].id)
    assert permissions.revoke("ft:m", granted[0].id)
    assert not permissions.allows("ft:m", "org-a", "p1")


def test_uploads_are_scoped_compared_and_set_and_expire(store: Store) -> None:
    now = int(time.time())
    uploads = store.uploads
    for n, expires in ((1, now - 10), (2, now - 20), (3, now + 100)):
        uploads.insert(UploadRow(f"upload_{n}", ORG, "t.jsonl", "fine-tune", 6, "text/plain", "pending", now, expires))
    with pytest.raises(NotFound):
        uploads.get("upload_1", OTHER)
    for n in (1, 2):
        uploads.add_part(UploadPartRow(f"part_{n}", "upload_1", now, 3 * n, f"uploads/upload_1/part_{n}"))
    assert [p.id for p in uploads.parts("upload_1")] == ["part_1", "part_2"]
    assert uploads.bytes_received("upload_1") == 9 and uploads.bytes_received("upload_3") == 0
    assert [u.id for u in uploads.pending_expired(now)] == ["upload_2", "upload_1"]
    assert uploads.set_status("upload_1", "pending", "completed", file_id="file-1")
    assert not uploads.set_status("upload_1", "pending", "cancelled")
    assert (uploads.get("upload_1", ORG).status, uploads.get("upload_1", ORG).file_id) == ("completed", "file-1")
    uploads.delete_parts("upload_1")
    assert uploads.parts("upload_1") == [] and [u.id for u in uploads.pending_expired(now)] == ["upload_2"]


def test_webhook_deliveries_are_leased_once_and_recorded(store: Store) -> None:
    webhooks = store.webhooks
    webhooks.add_endpoint(WebhookEndpointRow("we_1", ORG, "https://a.example", "whsec_x", 1))
    with pytest.raises(WebhookEndpointNotFound):
        webhooks.get_endpoint("we_1", OTHER)
    assert webhooks.get_endpoint("we_1").url == "https://a.example"
    assert [e.id for e in webhooks.list_endpoints(ORG)] == ["we_1"] and webhooks.list_endpoints(OTHER) == []
    store.insert_job(job_row("ftjob-1", "running", organization_id=ORG))
    for n in (1, 2):
        change = JobChange(
            expect_status=("running", "failed"),
            webhook=WebhookEvent("fine_tuning.job.failed", f"evt_{n}", "{}"),
            status="failed",
        )
        assert store.change_job("ftjob-1", change) is not None
    now = time.time() + 1
    due = webhooks.claim_due(now, lease_seconds=60)
    assert [d.event_id for d in due] == ["evt_1", "evt_2"] and all(d.status == PENDING for d in due)
    assert webhooks.claim_due(now, lease_seconds=60) == []
    webhooks.record_attempt(due[0].id, status=DELIVERED, attempts=1, next_attempt_at=0, status_code=200, error=None)
    newest_first = webhooks.list_deliveries("we_1")
    assert [d.event_id for d in newest_first] == ["evt_2", "evt_1"]
    assert (newest_first[1].status, newest_first[1].last_status_code, newest_first[1].attempts) == (DELIVERED, 200, 1)
    assert newest_first[1].delivered_at is not None and newest_first[0].delivered_at is None
    assert [d.event_id for d in webhooks.claim_due(now + 120, lease_seconds=60)] == ["evt_2"]
    webhooks.delete_endpoint("we_1", ORG)
    with pytest.raises(WebhookEndpointNotFound):
        webhooks.delete_endpoint("we_1", ORG)


def test_sql_and_memory_stores_have_every_method_of_the_protocol(tmp_path: Path) -> None:
    names = {n for n in vars(Store) if not n.startswith("_")}
    sql = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    for implementation in (sql, InMemoryStore()):
        assert not [n for n in names if not hasattr(implementation, n)], type(implementation).__name__
