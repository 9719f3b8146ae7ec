"""Job rows written straight to the store, for tests of the queue and the workers below the API."""

from __future__ import annotations

import time

from openft.store.rows import JobRow


def job_row(job_id: str, status: str, *, organization_id: str = "org-personal", **extra: object) -> JobRow:
    """A supervised tiny-chat job in ``status``; ``extra`` sets other fields (worker_id, heartbeat_at, ...)."""
    return JobRow(
        id=job_id,
        organization_id=organization_id,
        model="openft/tiny-chat",
        training_file="file-x",
        validation_file=None,
        status=status,
        method={"type": "supervised"},
        hyperparameters={},
        seed=1,
        model_name=f"ft:openft/tiny-chat:personal::{job_id[-8:]}",
        created_at=int(time.time()),
        **extra,  # type: ignore[arg-type]
    )
