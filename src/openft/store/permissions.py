"""Checkpoint permissions: which projects, each named with its organization, may use a fine-tuned model
or checkpoint. Every lookup matches both ids: project ids are chosen per organization, so the same one
(``default``, say) names different projects in different organizations."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select

from openft import ids
from openft.store import schema as s
from openft.store.database import Store

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


def _row(r: object) -> PermissionRow:
    m = r._mapping  # type: ignore[attr-defined]
    return PermissionRow(**{k: v for k, v in m.items() if k != "seq"})


class PermissionStore:
    def __init__(self, store: Store):
        self.engine = store.engine

    def grant(self, model: str, grantees: list[tuple[str, str]]) -> list[PermissionRow]:
        """One permission per ``(organization_id, project_id)``; a project that already has one keeps it
        (returned as it is)."""
        existing = {(p.organization_id, p.project_id): p for p in self.list(model)}
        out: list[PermissionRow] = []
        with self.engine.begin() as conn:
            for organization_id, project_id in dict.fromkeys(grantees):
                if (organization_id, project_id) in existing:
                    out.append(existing[organization_id, project_id])
                    continue
                row = PermissionRow(
                    id=ids.new_permission_id(),
                    fine_tuned_model_checkpoint=model,
                    organization_id=organization_id,
                    project_id=project_id,
                    created_at=int(time.time()),
                )
                conn.execute(insert(_t).values(**row.__dict__))
                out.append(row)
        return out

    def list(
        self, model: str, *, grantee: tuple[str, str] | None = None, newest_first: bool = False
    ) -> list[PermissionRow]:
        """``model``'s permissions, or only the one of ``grantee`` (``(organization_id, project_id)``)."""
        query = select(_t).where(_t.c.fine_tuned_model_checkpoint == model)
        if grantee is not None:
            query = query.where(_t.c.organization_id == grantee[0], _t.c.project_id == grantee[1])
        query = query.order_by(_t.c.seq.desc() if newest_first else _t.c.seq.asc())
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def revoke(self, model: str, permission_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(delete(_t).where(_t.c.fine_tuned_model_checkpoint == model, _t.c.id == permission_id))
            return bool(result.rowcount)

    def allows(self, model: str, organization_id: str, project_id: str) -> bool:
        """Whether project ``project_id`` of ``organization_id`` may use ``model``."""
        query = select(_t.c.seq).where(
            _t.c.fine_tuned_model_checkpoint == model,
            _t.c.organization_id == organization_id,
            _t.c.project_id == project_id,
        )
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def shared_with(self, organization_id: str, project_id: str) -> list[PermissionRow]:
        """Every model shared with project ``project_id`` of ``organization_id``, oldest grant first."""
        query = (
            select(_t).where(_t.c.organization_id == organization_id, _t.c.project_id == project_id).order_by(_t.c.seq)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]
