"""Who is calling.

With no API keys configured, any bearer token is accepted and everything belongs to the single local
organization (``settings.organization_id``); ``openft serve`` only allows that on loopback unless told
``--insecure``. Once a key exists (``openft keys create``), every ``/v1`` request needs a valid, unrevoked
key, and acts as that key's organization and project. Requests are then limited per key per minute.

A resolved header is remembered for :data:`PRINCIPAL_TTL_SECONDS`, so a client sending many requests
costs one key lookup a second, not two queries and a thread hop per request. Keys created or revoked
through the server's own :class:`KeyStore` take effect at once; a revocation by another process
(``openft keys revoke``) within that time.
"""

from __future__ import annotations

import time

import anyio.to_thread
from cachetools import TTLCache
from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from openft.api.limits import RateLimiter, send_error
from openft.errors import AuthenticationFailed, OpenFTError
from openft.settings import Settings
from openft.store.keys import KeyStore, hash_key
from openft.tenancy import Principal

PRINCIPAL_TTL_SECONDS = 1.0
PRINCIPAL_CACHE_SIZE = 1024

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


class PrincipalCache:
    """Principals of recently resolved ``Authorization`` headers, keyed by their hash (never the key itself).

    Only successes are kept: a refused header is looked up again each time.
    """

    def __init__(self, keys: KeyStore, ttl: float = PRINCIPAL_TTL_SECONDS, size: int = PRINCIPAL_CACHE_SIZE):
        self.keys = keys
        # Each principal keeps the key store's generation it was resolved under: a key created or revoked
        # through this process's store outdates every entry at once. Used from the event loop only.
        self._entries: TTLCache[str, tuple[Principal, int]] = TTLCache(maxsize=size, ttl=ttl, timer=time.monotonic)

    def get(self, header: str | None) -> Principal | None:
        entry = self._entries.get(hash_key(header or ""))
        if entry is None or entry[1] != self.keys.generation:
            return None
        return entry[0]

    def put(self, header: str | None, principal: Principal) -> None:
        self._entries[hash_key(header or "")] = (principal, self.keys.generation)


class AuthMiddleware:
    """Authenticates every ``/v1`` request (401 in OpenAI's envelope) and applies the per-key rate limit (429)."""

    def __init__(self, app: ASGIApp, keys: KeyStore, settings: Settings, limiter: RateLimiter):
        self.app = app
        self.keys = keys
        self.settings = settings
        self.limiter = limiter
        self.principals = PrincipalCache(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"authorization")
        header = raw.decode("latin-1") if raw is not None else None
        principal = self.principals.get(header)
        if principal is None:
            try:
                principal = await anyio.to_thread.run_sync(resolve_principal, self.keys, self.settings, header)
            except AuthenticationFailed as exc:
                await send_error(send, exc)
                return
            self.principals.put(header, principal)
        if principal.key_id is not None:
            try:
                wait = await self.limiter.check(principal.key_id)
            except OpenFTError as exc:  # the limit could not be checked: refused, not waved through
                await send_error(send, exc)
                return
            if wait > 0:
                error, headers = self.limiter.error(principal.key_id, wait)
                await send_error(send, error, headers)
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def authenticate(request: Request) -> Principal:
    """The request's principal: set by :class:`AuthMiddleware` on ``/v1``, resolved here elsewhere."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    keys: KeyStore = request.app.state.keys
    header = request.headers.get("authorization")
    return await anyio.to_thread.run_sync(resolve_principal, keys, request.app.state.settings, header)
