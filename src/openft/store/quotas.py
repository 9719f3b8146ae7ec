"""Counts behind per-organization limits."""

from __future__ import annotations

from collections.abc import Iterable

from openft.store.base import Store


def count_jobs(store: Store, organization_id: str, statuses: Iterable[str]) -> int:
    """How many of the organization's jobs are in one of ``statuses`` (:meth:`Store.count_jobs`)."""
    return store.count_jobs(organization_id, statuses)
