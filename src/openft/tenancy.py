"""Who is asking: every request and every stored object belongs to an organization (and project)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    organization_id: str
    project_id: str | None = None
    key_id: str | None = None
    """The API key that authenticated the request; None for the local single-user default."""
