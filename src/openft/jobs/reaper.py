"""The reaper: takes jobs back from workers that are gone, and retries or fails lost attempts.

Every worker runs it every few seconds. A job held by a worker process of this host that no longer
exists is taken back at once (a restarted ``openft serve`` picks up its running jobs without waiting
for the heartbeat timeout); a job held by any other worker once its heartbeat is older than
``heartbeat_timeout_seconds``. A running job goes back to the queue (its next attempt continues from
its last full-state checkpoint) until it has had ``max_job_attempts``, then fails with ``worker_lost``;
a validating, queued or paused job is only released (a paused job stays paused). A job taken for
silence is taken only if its worker is still silent when the change commits (a compare-and-set on the
heartbeat), so a worker that heartbeats in the meantime keeps it.
"""

from __future__ import annotations

from openft.jobs import status as st
from openft.jobs.recovery import worker_is_gone
from openft.jobs.transitions import NewEvent, fail, release, transition
from openft.settings import Settings
from openft.store import Store
from openft.store.rows import JobRow

HELD_STATUSES = (st.RUNNING, st.VALIDATING, st.QUEUED, st.PAUSED)


class Reaper:
    def __init__(self, settings: Settings, store: Store, worker_id: str):
        self.settings = settings
        self.store = store
        self.worker_id = worker_id

    def reap(self, now: float, *, training: str | None) -> None:
        """Take back what gone workers hold; ``training`` is the job this worker is running now."""
        stale_before = now - self.settings.heartbeat_timeout_seconds
        for job in self.store.held_jobs(HELD_STATUSES):
            if job.worker_id is None or job.id == training:
                continue
            # Held by this worker but not being worked on (a race lost while finishing): as good as gone.
            gone = job.worker_id == self.worker_id or worker_is_gone(job.worker_id)
            if not (gone or (job.heartbeat_at or 0.0) < stale_before):
                continue
            # A worker that is only silent keeps the job if it heartbeats before the take-back commits.
            silent_before = None if gone else stale_before
            if job.status == st.RUNNING:
                self.take_back(job, why="The worker running this job stopped responding", stale_before=silent_before)
            else:  # nothing runs for it: free it for the next worker
                release(self.store, job.id, expect=job.status, worker=job.worker_id, stale_before=silent_before)

    def take_back(self, job: JobRow, *, why: str, code: str = "worker_lost", stale_before: float | None = None) -> None:
        """Re-queue a running job whose attempt was lost, or fail it (``code``) once it has had ``max_job_attempts``.

        ``stale_before``: take it only if its worker's heartbeat is still older than this.
        """
        assert job.worker_id is not None
        attempts = job.attempts + 1
        if attempts < self.settings.max_job_attempts:
            message = (
                f"{why}; the job was re-queued and continues from its last checkpoint "
                f"(attempt {attempts + 1} of {self.settings.max_job_attempts})"
            )
            transition(
                self.store,
                job.id,
                st.QUEUED,
                expect=st.RUNNING,
                worker=job.worker_id,
                stale_before=stale_before,
                events=[NewEvent(message, level="warn")],
                worker_id=None,
                attempts=attempts,
                estimated_finish=None,
            )
            return
        error = {"code": code, "param": None, "message": f"{why} {attempts} times."}
        fail(self.store, job.id, error, expect=st.RUNNING, worker=job.worker_id, stale_before=stale_before)
