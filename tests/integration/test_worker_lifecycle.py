"""Queue semantics on real databases: exactly-once claims and recovery from a dead worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from job_rows import job_row
from openft.jobs import status as st
from openft.jobs.transitions import transition
from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import Store, open_store
from openft.store.rows import JobRow

pytestmark = pytest.mark.integration


def _job(job_id: str, status: str = st.QUEUED, **extra: object) -> JobRow:
    return job_row(job_id, status, **extra)


@pytest.fixture
def store(settings: Settings) -> Store:
    settings.ensure_dirs()
    return open_store(settings.sqlalchemy_url)


def test_each_queued_job_is_claimed_exactly_once(store: Store) -> None:
    for i in range(20):
        store.insert_job(_job(f"ftjob-claim{i:04d}"))
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (job := store.claim_next_job(name, st.QUEUED, to_status=st.RUNNING)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(f"ftjob-claim{i:04d}" for i in range(20))
    assert all(store.get_job(j).status == st.RUNNING for j in claimed)


def test_a_job_whose_worker_died_is_requeued_then_failed(store: Store, settings: Settings) -> None:
    stale = time.time() - settings.heartbeat_timeout_seconds - 5
    store.insert_job(_job("ftjob-orphan0001", st.RUNNING, worker_id="gone", heartbeat_at=stale))
    worker = Worker(settings, store)
    worker.reap_stale_jobs(time.time())
    job = store.get_job("ftjob-orphan0001")
    assert job.status == st.QUEUED and job.worker_id is None and job.attempts == 1
    assert "re-queued" in store.list_events(job.id)[0][0].message
    transition(
        store,
        job.id,
        st.RUNNING,
        expect=st.QUEUED,
        worker_id="gone-again",
        heartbeat_at=stale,
        attempts=settings.max_job_attempts - 1,
    )
    worker.reap_stale_jobs(time.time())
    job = store.get_job(job.id)
    assert job.status == st.FAILED and job.error is not None and job.error["code"] == "worker_lost"


def test_a_live_worker_keeps_its_job(store: Store, settings: Settings) -> None:
    store.insert_job(_job("ftjob-alive0001", st.RUNNING, worker_id="busy", heartbeat_at=time.time()))
    Worker(settings, store).reap_stale_jobs(time.time())
    assert store.get_job("ftjob-alive0001").status == st.RUNNING


def test_migrations_are_idempotent(settings: Settings, tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from openft.store.database import create_db_engine
    from openft.store.migrate import alembic_config, current_revision, upgrade_database

    engine = create_db_engine(settings.sqlalchemy_url)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    # An install created at the first revision upgrades in place, and upgrading twice is a no-op.
    upgrade_database(engine, "0001")
    assert current_revision(engine) == "0001"
    upgrade_database(engine)
    upgrade_database(engine)
    assert current_revision(engine) == head != "0001"


def test_processes_starting_together_migrate_one_at_a_time(settings: Settings) -> None:
    """API replicas and workers all migrate on start; on a fresh database they must not collide."""
    from alembic.script import ScriptDirectory

    from openft.store.database import create_db_engine
    from openft.store.migrate import alembic_config, current_revision

    env = {**os.environ, "OPENFT_HOME": str(settings.home), "OPENFT_DATABASE_URL": settings.sqlalchemy_url}
    upgrades = [
        subprocess.Popen(
            [sys.executable, "-m", "openft", "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in upgrades]
    assert [p.returncode for p in upgrades] == [0, 0, 0, 0], "\n".join(o[-1500:] for o in outputs)
    engine = create_db_engine(settings.sqlalchemy_url)
    assert current_revision(engine) == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
