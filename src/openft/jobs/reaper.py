"""The reaper: takes jobs back from workers that are gone, and retries or fails lost attempts.

Every worker runs it every few seconds. A job held by a worker process of this host that no longer
exists is taken back at once (a restarted ``openft serve`` picks up its running jobs without waiting
for the heartbeat timeout); a job held by any other worker once its heartbeat is older than
``heartbeat_timeout_seconds``. A running job goes back to the queue (its next attempt continues from
its last full-state checkpoint) until it has had ``max_job_attempts``, then fails with ``worker_lost``;
a validating, queued or paused job is only released (a paused job stays paused).
"""

from __future__ import annotations

import time

from openft.jobs import status as st
from openft.jobs import webhooks
from openft.jobs.recovery import worker_is_gone
from openft.settings import Settings
from openft.store import Store
from openft.store.recovery import held_jobs
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
        for job in held_jobs(self.store, HELD_STATUSES):
            if job.worker_id is None or job.id == training:
                continue
            # Held by this worker but not being worked on (a race lost while finishing): as good as gone.
            ours = job.worker_id == self.worker_id
            if not (ours or worker_is_gone(job.worker_id) or (job.heartbeat_at or 0.0) < stale_before):
                continue
            if job.status == st.RUNNING:
                self.take_back(job, why="The worker running this job stopped responding")
            else:  # nothing runs for it: free it for the next worker
                self.store.update_job(job.id, expect_status=job.status, expect_worker=job.worker_id, worker_id=None)

    def take_back(self, job: JobRow, *, why: str, code: str = "worker_lost") -> None:
        """Re-queue a running job whose attempt was lost, or fail it (``code``) once it has had ``max_job_attempts``."""
        attempts = job.attempts + 1
        if attempts < self.settings.max_job_attempts:
            if self.store.update_job(
                job.id,
                expect_status=st.RUNNING,
                expect_worker=job.worker_id,
                status=st.QUEUED,
                worker_id=None,
                attempts=attempts,
                estimated_finish=None,
            ):
                self.store.append_event(
                    job.id,
                    f"{why}; the job was re-queued and continues from its last checkpoint "
                    f"(attempt {attempts + 1} of {self.settings.max_job_attempts})",
                    level="warn",
                )
            return
        error = {"code": code, "param": None, "message": f"{why} {attempts} times."}
        if self.store.update_job(
            job.id,
            expect_status=st.RUNNING,
            expect_worker=job.worker_id,
            status=st.FAILED,
            error=error,
            finished_at=int(time.time()),
            estimated_finish=None,
        ):
            self.store.append_event(job.id, error["message"], level="error")
            webhooks.job_finished(self.store, job.id, st.FAILED)
