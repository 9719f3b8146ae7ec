"""Checkpoint permissions: which projects, each named with its organization, may use a fine-tuned model
or checkpoint. Every lookup matches both ids: project ids are chosen per organization, so the same one
(``default``, say) names different projects in different organizations.

:class:`PermissionStore` keeps the rules (one permission per project) over its own small seam,
:class:`PermissionRecords` (reached as ``store.permissions``): :class:`SqlPermissions` here,
``MemoryPermissions`` in ``store/memory_records.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine, delete, insert, select

from openft import ids
from openft.store import schema as s
from openft.store.mapper import RowMapper

if TYPE_CHECKING:
    from openft.store.base import Store

_t = s.checkpoint_permissions


@dataclass
class PermissionRow:
    id: str
    fine_tuned_model_checkpoint: str
    organization_id: str
    """The organization of the project allowed to use the model. (Rows written before grants named an
    organization hold the model owner's here: the reading a bare project id has now.)"""
    project_id: str
    """The project, of that organization, allowed to use the model."""
    created_at: int


PERMISSIONS = RowMapper(PermissionRow, _t)


class PermissionRecords(Protocol):
    """The ``checkpoint_permissions`` rows."""

    def insert(self, rows: list[PermissionRow]) -> None:
        """Store new permissions, in one transaction."""
        ...

    def revoke(self, model: str, permission_id: str) -> bool:
        """Delete one of ``model``'s permissions; whether it existed."""
        ...

    def allows(self, model: str, organization_id: str, project_id: str) -> bool:
        """Whether project ``project_id`` of ``organization_id`` may use ``model``."""
        ...

    def shared_with(self, organization_id: str, project_id: str) -> list[PermissionRow]:
        """Every model shared with project ``project_id`` of ``organization_id``, oldest grant first."""
        ...

    def list(
        self, model: str, *, grantee: tuple[str, str] | None = None, newest_first: bool = False
    ) -> list[PermissionRow]:
        """``model``'s permissions, or only the one of ``grantee`` (``(organization_id, project_id)``)."""
        ...


class SqlPermissions:
    """:class:`PermissionRecords` in the ``checkpoint_permissions`` table."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def insert(self, rows: list[PermissionRow]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(_t), [PERMISSIONS.values(row) for row in rows])

    def revoke(self, model: str, permission_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(delete(_t).where(_t.c.fine_tuned_model_checkpoint == model, _t.c.id == permission_id))
            return bool(result.rowcount)

    def allows(self, model: str, organization_id: str, project_id: str) -> bool:
        query = select(_t.c.seq).where(
            _t.c.fine_tuned_model_checkpoint == model,
            _t.c.organization_id == organization_id,
            _t.c.project_id == project_id,
        )
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def shared_with(self, organization_id: str, project_id: str) -> list[PermissionRow]:
        query = (
            PERMISSIONS.select()
            .where(_t.c.organization_id == organization_id, _t.c.project_id == project_id)
            .order_by(_t.c.seq)
        )
        with self.engine.connect() as conn:
            return PERMISSIONS.all(conn.execute(query))

    def list(
        self, model: str, *, grantee: tuple[str, str] | None = None, newest_first: bool = False
    ) -> list[PermissionRow]:
        query = PERMISSIONS.select().where(_t.c.fine_tuned_model_checkpoint == model)
        if grantee is not None:
            query = query.where(_t.c.organization_id == grantee[0], _t.c.project_id == grantee[1])
        query = query.order_by(_t.c.seq.desc() if newest_first else _t.c.seq.asc())
        with self.engine.connect() as conn:
            return PERMISSIONS.all(conn.execute(query))


class PermissionStore:
    """Grant, list, revoke and check the permissions of ``store``."""

    def __init__(self, store: Store):
        self.records = store.permissions

    def grant(self, model: str, grantees: list[tuple[str, str]]) -> list[PermissionRow]:
        """One permission per ``(organization_id, project_id)``; a project that already has one keeps it
        (returned as it is)."""
        existing = {(p.organization_id, p.project_id): p for p in self.records.list(model)}
        out: list[PermissionRow] = []
        new: list[PermissionRow] = []
        for organization_id, project_id in dict.fromkeys(grantees):
            row = existing.get((organization_id, project_id))
            if row is None:
                row = PermissionRow(
                    id=ids.new_permission_id(),
                    fine_tuned_model_checkpoint=model,
                    organization_id=organization_id,
                    project_id=project_id,
                    created_at=int(time.time()),
                )
                new.append(row)
            out.append(row)
        self.records.insert(new)
        return out

    def revoke(self, model: str, permission_id: str) -> bool:
        return self.records.revoke(model, permission_id)

    def allows(self, model: str, organization_id: str, project_id: str) -> bool:
        """Whether project ``project_id`` of ``organization_id`` may use ``model``."""
        return self.records.allows(model, organization_id, project_id)

    def shared_with(self, organization_id: str, project_id: str) -> list[PermissionRow]:
        """Every model shared with project ``project_id`` of ``organization_id``, oldest grant first."""
        return self.records.shared_with(organization_id, project_id)

    def list(
        self, model: str, *, grantee: tuple[str, str] | None = None, newest_first: bool = False
    ) -> list[PermissionRow]:
        """``model``'s permissions, or only the one of ``grantee`` (``(organization_id, project_id)``)."""
        return self.records.list(model, grantee=grantee, newest_first=newest_first)
