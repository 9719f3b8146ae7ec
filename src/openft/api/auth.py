"""Who is calling. With no API keys configured, a loopback server accepts any bearer token and
everything belongs to the single local organization (``settings.organization_id``)."""

from __future__ import annotations

from fastapi import Request

from openft.tenancy import Principal


def authenticate(request: Request) -> Principal:
    settings = request.app.state.settings
    return Principal(organization_id=settings.organization_id)
