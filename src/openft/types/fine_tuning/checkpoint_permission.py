"""``checkpoint.permission`` objects (``openai.types.fine_tuning.checkpoints``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FineTuningCheckpointPermission(BaseModel):
    """A project's permission to use a fine-tuned model or checkpoint."""

    id: str
    """The permission identifier, ``cp_…``."""
    created_at: int
    """Unix time (seconds) when the permission was created."""
    project_id: str
    """The project allowed to use the checkpoint: its id for a project of the model's organization,
    ``organization_id/project_id`` for another organization's (openft; the form ``project_ids`` takes)."""
    organization_id: str
    """The organization of that project (openft-specific)."""
    object: Literal["checkpoint.permission"] = "checkpoint.permission"


class PermissionCreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_ids: list[str] = Field(min_length=1, max_length=100)
    """The projects to grant access to: ``project_id`` for one of the caller's organization,
    ``organization_id/project_id`` for another organization's."""


class PermissionDeleted(BaseModel):
    id: str
    """The id of the deleted permission."""
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    deleted: bool
