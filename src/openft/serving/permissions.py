"""Sharing fine-tuned models and checkpoints with other projects (checkpoint permissions).

Only the organization that owns a model manages its permissions; to anyone else the model does not
exist (404). A project granted a permission can list, retrieve and chat with the model until the
permission is deleted.

A project is always one of an organization (two organizations may each have a ``default``). On the
wire, where OpenAI has ``project_ids`` and ``project_id``, a bare id (``default``) names a project of
the caller's own organization, and ``organization_id/project_id`` (``org-globex/default``) one of
another organization; a permission's ``project_id`` is written the same way, and its
``organization_id`` names the project's organization.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openft.errors import InvalidRequest, ModelNotFound, NotFound
from openft.store import Store
from openft.store.permissions import PermissionRow, PermissionStore
from openft.tenancy import Principal

_GRANTEE = re.compile(r"^(?:(?P<organization>[A-Za-z0-9_-]{1,64})/)?(?P<project>[A-Za-z0-9_-]{1,64})$")


@dataclass(frozen=True)
class Grantee:
    """A project of an organization."""

    organization_id: str
    project_id: str


def parse_grantee(value: str, own_organization: str, param: str) -> Grantee:
    """``project_id`` (a project of ``own_organization``) or ``organization_id/project_id``.

    Raises:
        InvalidRequest: anything else.
    """
    found = _GRANTEE.match(value)
    if found is None:
        raise InvalidRequest(
            f"Invalid project id {value[:140]!r}: expected a project id of your organization, or "
            "'organization_id/project_id' for another organization's (each 1-64 letters, digits, '-' or '_').",
            param=param,
        )
    return Grantee(found["organization"] or own_organization, found["project"])


def grantee_name(row: PermissionRow, owner_organization: str) -> str:
    """A permission's project as the owner names it: bare in its own organization, else qualified."""
    if row.organization_id == owner_organization:
        return row.project_id
    return f"{row.organization_id}/{row.project_id}"


class CheckpointPermissions:
    def __init__(self, store: Store):
        self.store = store
        self.rows = PermissionStore(store)

    def _check_owner(self, principal: Principal, model: str) -> None:
        job = self.store.find_job_by_model(model)
        if job is not None and job.organization_id == principal.organization_id:
            return
        ckpt = self.store.get_checkpoint_by_model(model)
        if ckpt is not None and ckpt.organization_id == principal.organization_id:
            if not self.store.get_job(ckpt.job_id).model_deleted:
                return
        raise ModelNotFound(
            f"The model `{model}` does not exist or you do not have access to it.", param="fine_tuned_model_checkpoint"
        )

    def create(self, principal: Principal, model: str, project_ids: list[str]) -> list[PermissionRow]:
        """Share ``model`` with each project (``project`` or ``organization/project``, see above).

        Raises:
            ModelNotFound: not a fine-tuned model or checkpoint of the caller's organization.
            InvalidRequest: a malformed project id.
        """
        self._check_owner(principal, model)
        grantees = [parse_grantee(p, principal.organization_id, "project_ids") for p in project_ids]
        return self.rows.grant(model, [(g.organization_id, g.project_id) for g in grantees])

    def list(
        self,
        principal: Principal,
        model: str,
        *,
        project_id: str | None,
        after: str | None,
        limit: int,
        order: str,
    ) -> tuple[list[PermissionRow], bool]:
        """One page of ``model``'s permissions (``order``: ``ascending`` or ``descending``), or only
        ``project_id``'s (named as in :meth:`create`)."""
        self._check_owner(principal, model)
        grantee = None
        if project_id is not None:
            g = parse_grantee(project_id, principal.organization_id, "project_id")
            grantee = (g.organization_id, g.project_id)
        rows = self.rows.list(model, grantee=grantee, newest_first=order == "descending")
        if after is not None:
            position = next((i for i, r in enumerate(rows) if r.id == after), None)
            rows = rows[position + 1 :] if position is not None else rows
        return rows[:limit], len(rows) > limit

    def delete(self, principal: Principal, model: str, permission_id: str) -> None:
        """Raises ModelNotFound for another organization's model, NotFound for an unknown permission."""
        self._check_owner(principal, model)
        if not self.rows.revoke(model, permission_id):
            raise NotFound(
                f"No permission {permission_id[:80]} on {model}.", param="permission_id", code="permission_not_found"
            )
