"""Counts behind per-organization limits."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select

from openft.store import schema as s
from openft.store.database import Store


def count_jobs(store: Store, organization_id: str, statuses: Iterable[str]) -> int:
    """How many of the organization's jobs are in one of ``statuses``."""
    query = (
        select(func.count())
        .select_from(s.jobs)
        .where(s.jobs.c.organization_id == organization_id, s.jobs.c.status.in_(list(statuses)))
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
