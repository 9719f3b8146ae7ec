"""Files past their ``expires_at``: the condition every file read applies, and the sweep's two queries.

A file is gone the moment its ``expires_at`` passes, because every read of a file row filters on the
clock (:func:`unexpired`); the sweep (``files/expiry.py``) only reclaims the rows and bytes later.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Engine, delete, or_, select

from openft.store import schema as s


def unexpired(now: float) -> ColumnElement[bool]:
    """Files that never expire, or expire after ``now``."""
    return or_(s.files.c.expires_at.is_(None), s.files.c.expires_at > now)


def expired_files(engine: Engine, before: float, limit: int) -> list[tuple[str, str]]:
    """``(id, blob_path)`` of up to ``limit`` files that expired at or before ``before``, oldest first."""
    query = (
        select(s.files.c.id, s.files.c.blob_path)
        .where(s.files.c.expires_at <= before)
        .order_by(s.files.c.expires_at)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(row[0], row[1]) for row in conn.execute(query)]


def delete_expired_rows(engine: Engine, file_ids: Sequence[str], before: float) -> int:
    """Delete the rows of ``file_ids`` that expired at or before ``before``; returns how many went."""
    if not file_ids:
        return 0
    query = delete(s.files).where(s.files.c.id.in_(list(file_ids)), s.files.c.expires_at <= before)
    with engine.begin() as conn:
        return conn.execute(query).rowcount
