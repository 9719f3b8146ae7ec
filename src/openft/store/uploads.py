"""Uploads and their parts: rows only; the part bytes live under ``$OPENFT_HOME/uploads``.

Their own small seam, :class:`UploadRecords` (reached as ``store.uploads``): :class:`SqlUploads` here,
``MemoryUploads`` in ``store/memory_records.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, delete, func, insert, select, update

from openft.errors import NotFound
from openft.store import schema as s
from openft.store.mapper import RowMapper


@dataclass
class UploadRow:
    id: str
    organization_id: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    status: str
    created_at: int
    expires_at: int
    project_id: str | None = None
    file_id: str | None = None
    file_expires_after_seconds: int | None = None


@dataclass
class UploadPartRow:
    id: str
    upload_id: str
    created_at: int
    bytes: int
    blob_path: str
    """Relative to ``$OPENFT_HOME``."""


UPLOADS = RowMapper(UploadRow, s.uploads)
PARTS = RowMapper(UploadPartRow, s.upload_parts)


def upload_not_found(upload_id: str) -> NotFound:
    return NotFound(f"No such Upload object: {upload_id}", param="upload_id", code="upload_not_found")


class UploadRecords(Protocol):
    """The ``uploads`` and ``upload_parts`` rows."""

    def insert(self, row: UploadRow) -> None: ...

    def get(self, upload_id: str, organization_id: str) -> UploadRow:
        """Raises: NotFound: absent or another organization's."""
        ...

    def set_status(self, upload_id: str, expect: str, status: str, **values: Any) -> bool:
        """Compare-and-set, so a complete racing a cancel (or the sweeper) has exactly one winner."""
        ...

    def add_part(self, row: UploadPartRow) -> None: ...

    def parts(self, upload_id: str) -> list[UploadPartRow]:
        """In the order they were added."""
        ...

    def bytes_received(self, upload_id: str) -> int: ...

    def delete_parts(self, upload_id: str) -> None: ...

    def pending_expired(self, now: int, limit: int = 100) -> list[UploadRow]:
        """Pending Uploads whose ``expires_at`` is at or before ``now``, soonest first."""
        ...


class SqlUploads:
    """:class:`UploadRecords` in the ``uploads`` and ``upload_parts`` tables."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def insert(self, row: UploadRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.uploads).values(**UPLOADS.values(row)))

    def get(self, upload_id: str, organization_id: str) -> UploadRow:
        query = UPLOADS.select().where(s.uploads.c.id == upload_id, s.uploads.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            row = UPLOADS.maybe(conn.execute(query).first())
        if row is None:
            raise upload_not_found(upload_id)
        return row

    def set_status(self, upload_id: str, expect: str, status: str, **values: Any) -> bool:
        query = update(s.uploads).where(s.uploads.c.id == upload_id, s.uploads.c.status == expect)
        with self.engine.begin() as conn:
            return conn.execute(query.values(status=status, **values)).rowcount == 1

    def add_part(self, row: UploadPartRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.upload_parts).values(**PARTS.values(row)))

    def parts(self, upload_id: str) -> list[UploadPartRow]:
        query = PARTS.select().where(s.upload_parts.c.upload_id == upload_id).order_by(s.upload_parts.c.seq)
        with self.engine.connect() as conn:
            return PARTS.all(conn.execute(query))

    def bytes_received(self, upload_id: str) -> int:
        query = select(func.coalesce(func.sum(s.upload_parts.c.bytes), 0)).where(
            s.upload_parts.c.upload_id == upload_id
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def delete_parts(self, upload_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(s.upload_parts).where(s.upload_parts.c.upload_id == upload_id))

    def pending_expired(self, now: int, limit: int = 100) -> list[UploadRow]:
        query = (
            UPLOADS.select()
            .where(s.uploads.c.status == "pending", s.uploads.c.expires_at <= now)
            .order_by(s.uploads.c.expires_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return UPLOADS.all(conn.execute(query))
