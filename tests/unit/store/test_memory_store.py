"""What the in-memory store adds to the shared contract (tests/integration/test_store_contract.py): its one
lock makes claims atomic across threads, and no caller ever holds a stored row."""

from __future__ import annotations

import threading

from job_rows import job_row
from openft.store import InMemoryStore
from openft.store.base import JobChange, NewEvent


def test_concurrent_claims_hand_out_each_job_once() -> None:
    store = InMemoryStore()
    for n in range(200):
        store.insert_job(job_row(f"ftjob-{n:03d}", "queued"))
    claimed: list[str] = []
    start = threading.Barrier(8)

    def claim(worker: str) -> None:
        start.wait()
        while (job := store.claim_next_job(worker, "queued", to_status="running")) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [f"ftjob-{n:03d}" for n in range(200)]


def test_rows_going_in_and_out_are_copies() -> None:
    store = InMemoryStore()
    row = job_row("ftjob-1", "running", worker_id="w", metadata={"k": "v"})
    store.insert_job(row)
    row.metadata["k"] = "changed by the caller"  # type: ignore[index]
    changed = store.change_job("ftjob-1", JobChange(expect_status=("running",), events=(NewEvent("e", data={"a": 1}),)))
    assert changed is not None and changed.metadata == {"k": "v"}
    changed.result_files.append("file-x")
    event = store.list_events("ftjob-1")[0][0]
    assert event.data is not None
    event.data["a"] = 2
    assert store.get_job("ftjob-1").result_files == [] and store.list_events("ftjob-1")[0][0].data == {"a": 1}
