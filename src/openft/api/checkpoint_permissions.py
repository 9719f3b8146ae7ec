"""/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions: share a model with other projects.

A project is named ``project_id`` (the caller's organization) or ``organization_id/project_id``
(see ``serving/permissions.py``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from openft.api.deps import PermissionsDep, PrincipalDep
from openft.api.openapi import errors
from openft.serving.permissions import grantee_name
from openft.store.permissions import PermissionRow
from openft.types.fine_tuning.checkpoint_permission import (
    FineTuningCheckpointPermission,
    PermissionCreateParams,
    PermissionDeleted,
)
from openft.types.shared import CursorPage, page_of

router = APIRouter(prefix="/v1/fine_tuning/checkpoints", tags=["fine-tuning"])


def permission_to_wire(row: PermissionRow, owner_organization: str) -> FineTuningCheckpointPermission:
    return FineTuningCheckpointPermission(
        id=row.id,
        created_at=row.created_at,
        project_id=grantee_name(row, owner_organization),
        organization_id=row.organization_id,
    )


@router.post(
    "/{fine_tuned_model_checkpoint:path}/permissions",
    response_model=CursorPage[FineTuningCheckpointPermission],
    responses=errors(400, 404),
)
def create_permission(
    principal: PrincipalDep,
    permissions: PermissionsDep,
    fine_tuned_model_checkpoint: str,
    params: PermissionCreateParams,
) -> CursorPage[FineTuningCheckpointPermission]:
    rows = permissions.create(principal, fine_tuned_model_checkpoint, params.project_ids)
    return page_of([permission_to_wire(r, principal.organization_id) for r in rows], False)


@router.get(
    "/{fine_tuned_model_checkpoint:path}/permissions",
    response_model=CursorPage[FineTuningCheckpointPermission],
    responses=errors(400, 404),
)
def list_permissions(
    principal: PrincipalDep,
    permissions: PermissionsDep,
    fine_tuned_model_checkpoint: str,
    project_id: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    order: Literal["ascending", "descending"] = "descending",
) -> CursorPage[FineTuningCheckpointPermission]:
    rows, has_more = permissions.list(
        principal, fine_tuned_model_checkpoint, project_id=project_id, after=after, limit=limit, order=order
    )
    return page_of([permission_to_wire(r, principal.organization_id) for r in rows], has_more)


@router.delete(
    "/{fine_tuned_model_checkpoint:path}/permissions/{permission_id}",
    response_model=PermissionDeleted,
    responses=errors(404),
)
def delete_permission(
    principal: PrincipalDep, permissions: PermissionsDep, fine_tuned_model_checkpoint: str, permission_id: str
) -> PermissionDeleted:
    permissions.delete(principal, fine_tuned_model_checkpoint, permission_id)
    return PermissionDeleted(id=permission_id, deleted=True)
