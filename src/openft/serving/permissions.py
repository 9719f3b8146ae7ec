"""Sharing fine-tuned models and checkpoints with other projects (checkpoint permissions).

Only the organization that owns a model manages its permissions; to anyone else the model does not
exist (404). A project granted a permission can list, retrieve and chat with the model until the
permission is deleted.
"""

from __future__ import annotations

import re

from openft.errors import InvalidRequest, ModelNotFound, NotFound
from openft.store import Store
from openft.store.permissions import PermissionRow, PermissionStore
from openft.tenancy import Principal

_PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
        """Share ``model`` with each project.

        Raises:
            ModelNotFound: not a fine-tuned model or checkpoint of the caller's organization.
            InvalidRequest: a malformed project id.
        """
        self._check_owner(principal, model)
        for project_id in project_ids:
            if not _PROJECT_ID.match(project_id):
                raise InvalidRequest(
                    f"Invalid project id {project_id[:80]!r}: expected 1-64 letters, digits, '-' or '_'.",
                    param="project_ids",
                )
        return self.rows.grant(model, principal.organization_id, project_ids)

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
        """One page of ``model``'s permissions (``order``: ``ascending`` or ``descending``)."""
        self._check_owner(principal, model)
        rows = self.rows.list(model, project_id=project_id, newest_first=order == "descending")
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
