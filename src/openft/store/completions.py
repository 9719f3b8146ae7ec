"""Persistence of stored chat completions (``store: true``), per organization.

Metadata is kept twice: whole on the row (returned as it is) and as key/value rows in
``stored_completion_metadata``, so ``metadata[k]=v`` filters are index searches however many
completions an organization keeps.

Its own small seam, :class:`CompletionRecords` (reached as ``store.completions``): :class:`SqlCompletions`
here, ``MemoryCompletions`` in ``store/memory_answers.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Select, delete, exists, insert, select, update

from openft.errors import NotFound
from openft.store import schema as s


class CompletionNotFound(NotFound):
    """No such stored chat completion."""

    default_code = "chat_completion_not_found"


@dataclass
class StoredCompletionRow:
    id: str
    organization_id: str
    model: str
    request: dict[str, Any]
    """The request's ``messages`` and the parameters it was sampled with."""
    completion: dict[str, Any]
    """The ``chat.completion`` object as it was answered."""
    created_at: int
    project_id: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class CompletionFilter:
    """Which of an organization's stored completions to read."""

    model: str | None = None
    metadata: dict[str, str] | None = None
    created_after: int | None = None
    created_before: int | None = None


def completion_not_found(completion_id: str) -> CompletionNotFound:
    return CompletionNotFound(f"Chat completion with id '{completion_id}' not found.", param="completion_id")


def matches(row: StoredCompletionRow, where: CompletionFilter) -> bool:
    """Whether ``row`` is one ``where`` selects (its organization aside)."""
    metadata = row.metadata or {}
    return (
        (where.model is None or row.model == where.model)
        and all(metadata.get(k) == v for k, v in (where.metadata or {}).items())
        and (where.created_after is None or row.created_at >= where.created_after)
        and (where.created_before is None or row.created_at <= where.created_before)
    )


class CompletionRecords(Protocol):
    """Stored chat completions, each scoped by organization."""

    def insert(self, row: StoredCompletionRow) -> None: ...

    def get(self, completion_id: str, organization_id: str) -> StoredCompletionRow:
        """Raises: CompletionNotFound: absent or another organization's."""
        ...

    def page(
        self, organization_id: str, where: CompletionFilter, *, after: str | None, limit: int, order: str
    ) -> tuple[list[StoredCompletionRow], bool]:
        """The completions ``where`` selects, oldest first (``order`` ``asc``) or newest first, after the
        organization's completion ``after`` (an unknown cursor gives the first page); and whether more follow."""
        ...

    def select(self, organization_id: str, where: CompletionFilter, *, limit: int | None) -> list[StoredCompletionRow]:
        """The first ``limit`` (all when None) completions ``where`` selects, oldest first (an eval's data
        source, an export)."""
        ...

    def update_metadata(
        self, completion_id: str, organization_id: str, metadata: dict[str, str] | None
    ) -> StoredCompletionRow:
        """Replace the completion's metadata; the completion as it is now.

        Raises:
            CompletionNotFound: as :meth:`get`.
        """
        ...

    def delete(self, completion_id: str, organization_id: str) -> None:
        """Raises: CompletionNotFound: as :meth:`get`."""
        ...


def _row(row: Any) -> StoredCompletionRow:
    names = {f.name for f in fields(StoredCompletionRow)}
    return StoredCompletionRow(**{k: v for k, v in row._mapping.items() if k in names})


def _write_metadata(conn: Connection, completion_id: str, metadata: dict[str, str] | None) -> None:
    m = s.stored_completion_metadata
    conn.execute(delete(m).where(m.c.completion_id == completion_id))
    if metadata:
        conn.execute(insert(m), [{"completion_id": completion_id, "key": k, "value": v} for k, v in metadata.items()])


def _filtered(organization_id: str, where: CompletionFilter) -> Select[Any]:
    t, m = s.stored_completions, s.stored_completion_metadata
    query = select(t).where(t.c.organization_id == organization_id)
    if where.model is not None:
        query = query.where(t.c.model == where.model)
    for key, value in (where.metadata or {}).items():
        query = query.where(exists().where(m.c.completion_id == t.c.id, m.c.key == key, m.c.value == value))
    if where.created_after is not None:
        query = query.where(t.c.created_at >= where.created_after)
    if where.created_before is not None:
        query = query.where(t.c.created_at <= where.created_before)
    return query


class SqlCompletions:
    """:class:`CompletionRecords` in the ``stored_completions`` and ``stored_completion_metadata`` tables."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def insert(self, row: StoredCompletionRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.stored_completions).values(**asdict(row)))
            _write_metadata(conn, row.id, row.metadata)

    def get(self, completion_id: str, organization_id: str) -> StoredCompletionRow:
        t = s.stored_completions
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == completion_id, t.c.organization_id == organization_id)).first()
        if row is None:
            raise completion_not_found(completion_id)
        return _row(row)

    def page(
        self, organization_id: str, where: CompletionFilter, *, after: str | None, limit: int, order: str
    ) -> tuple[list[StoredCompletionRow], bool]:
        t = s.stored_completions
        query = _filtered(organization_id, where)
        with self.engine.connect() as conn:
            if after is not None:
                cursor = conn.execute(
                    select(t.c.seq).where(t.c.id == after, t.c.organization_id == organization_id)
                ).scalar()
                if cursor is not None:
                    query = query.where(t.c.seq > cursor if order == "asc" else t.c.seq < cursor)
            query = query.order_by(t.c.seq.asc() if order == "asc" else t.c.seq.desc()).limit(limit + 1)
            rows = conn.execute(query).all()
        return [_row(r) for r in rows[:limit]], len(rows) > limit

    def select(self, organization_id: str, where: CompletionFilter, *, limit: int | None) -> list[StoredCompletionRow]:
        t = s.stored_completions
        query = _filtered(organization_id, where).order_by(t.c.seq.asc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).all()]

    def update_metadata(
        self, completion_id: str, organization_id: str, metadata: dict[str, str] | None
    ) -> StoredCompletionRow:
        self.get(completion_id, organization_id)
        t = s.stored_completions
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == completion_id).values(metadata=metadata))
            _write_metadata(conn, completion_id, metadata)
        return self.get(completion_id, organization_id)

    def delete(self, completion_id: str, organization_id: str) -> None:
        self.get(completion_id, organization_id)
        with self.engine.begin() as conn:
            _write_metadata(conn, completion_id, None)
            conn.execute(delete(s.stored_completions).where(s.stored_completions.c.id == completion_id))
