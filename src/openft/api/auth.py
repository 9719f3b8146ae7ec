"""Who is calling.

With no API keys configured, any bearer token is accepted and everything belongs to the single local
organization (``settings.organization_id``); ``openft serve`` only allows that on loopback unless told
``--insecure``. Once a key exists (``openft keys create``), every ``/v1`` request needs a valid, unrevoked
key, and acts as that key's organization and project. Requests are then limited per key per minute.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from openft.api.limits import RateLimiter, send_error
from openft.errors import AuthenticationFailed
from openft.settings import Settings
from openft.store.keys import KeyStore
from openft.tenancy import Principal

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def resolve_principal(keys: KeyStore, settings: Settings, authorization: str | None) -> Principal:
    """The caller behind an ``Authorization`` header.

    Raises:
        AuthenticationFailed: keys are configured and the header carries none, or an unknown or revoked one.
    """
    token = _bearer(authorization)
    row = keys.find(token) if token else None
    if row is not None:
        return Principal(organization_id=row.organization_id, project_id=row.project_id, key_id=row.id)
    if not keys.any_configured():
        return Principal(organization_id=settings.organization_id)
    if token is None:
        raise AuthenticationFailed(_MISSING)
    shown = f"{token[:3]}***{token[-4:]}" if len(token) > 10 else "***"
    raise AuthenticationFailed(f"Incorrect API key provided: {shown}.")


class AuthMiddleware:
    """Authenticates every ``/v1`` request (401 in OpenAI's envelope) and applies the per-key rate limit (429)."""

    def __init__(self, app: ASGIApp, keys: KeyStore, settings: Settings):
        self.app = app
        self.keys = keys
        self.settings = settings
        self.limiter = RateLimiter(settings.requests_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"authorization")
        header = raw.decode("latin-1") if raw is not None else None
        try:
            principal = await anyio.to_thread.run_sync(resolve_principal, self.keys, self.settings, header)
        except AuthenticationFailed as exc:
            await send_error(send, exc)
            return
        if principal.key_id is not None and (wait := self.limiter.hit(principal.key_id)) > 0:
            error, headers = self.limiter.error(principal.key_id, wait)
            await send_error(send, error, headers)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def authenticate(request: Request) -> Principal:
    """The request's principal: set by :class:`AuthMiddleware` on ``/v1``, resolved here elsewhere."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    keys: KeyStore = request.app.state.keys
    return resolve_principal(keys, request.app.state.settings, request.headers.get("authorization"))
