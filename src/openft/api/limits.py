"""Limits applied before a request reaches its route: request size (413), requests per minute per key
(429, counted in a storage every API process shares), and no control characters in paths (404) or
query strings (400).

Both are pure ASGI so they act on the byte stream: a body over its limit is refused from its
``Content-Length`` before a byte is read, and a body that lies about its length (or is chunked) is cut
off as soon as the bytes received pass the limit.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

import anyio.to_thread
from limits import RateLimitItemPerMinute
from limits.errors import ConfigurationError, StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openft.errors import (
    InvalidRequest,
    NotFound,
    OpenFTError,
    RateLimitExceeded,
    RequestTooLarge,
    ServiceUnavailable,
)
from openft.settings import Settings
from openft.store.rate_limits import DatabaseStorage

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 1024 * 1024
"""Room for multipart boundaries and form fields around a file's bytes."""

WARN_EVERY_SECONDS = 60.0
"""How often a rate limiter that fails open says so while its storage stays down."""

_PART_PATH = re.compile(r"^/v1/uploads/[^/]+/parts/?$")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


async def send_error(send: Send, error: OpenFTError, headers: dict[str, str] | None = None) -> None:
    """Answer with OpenAI's error envelope, outside FastAPI's exception handlers."""
    body = json.dumps(error.to_envelope()).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    # A body we refused to read must not be left for the next request on this connection.
    raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.http_status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def body_limit_for(settings: Settings) -> Callable[[str, str], int]:
    """The largest body accepted by a method and path: files and upload parts may be big, the rest is JSON."""

    def limit(method: str, path: str) -> int:
        if method == "POST" and path.rstrip("/") == "/v1/files":
            return settings.max_file_bytes + MULTIPART_OVERHEAD
        if method == "POST" and _PART_PATH.match(path):
            return settings.max_upload_part_bytes + MULTIPART_OVERHEAD
        return settings.max_request_bytes

    return limit


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """413 for bodies over ``limit_for(method, path)`` bytes, checked before and while they are read."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])

        def error() -> RequestTooLarge:
            return RequestTooLarge(f"The request body is larger than the {limit} bytes this endpoint accepts.")

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await send_error(send, error())
                return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # FastAPI turns a failing body read into its own 400; the real reason is the size.
                if not started:
                    started = True
                    await send_error(send, error())
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started:
                await send_error(send, error())


class RateLimiter:
    """``per_minute`` requests per API key in each minute-long window, counted in a storage that every API
    process of a deployment shares (see :func:`rate_limit_storage`).

    ``limits`` does the counting (a fixed window per key, starting at the key's first request), so the
    limit holds for a key however many API processes and hosts its requests are spread over.
    """

    def __init__(self, per_minute: int, storage: Storage, *, fail_open: bool = False):
        self.per_minute = per_minute
        self.item = RateLimitItemPerMinute(per_minute, namespace="openft") if per_minute > 0 else None
        self.strategy = FixedWindowRateLimiter(storage)
        self.fail_open = fail_open
        # A window's count only grows until it resets: a key refused here stays refused until then,
        # so its further requests are answered without a round trip to the storage.
        self._refused_until: dict[str, float] = {}
        self._blocking = not isinstance(storage, MemoryStorage)
        self._last_warning = 0.0
        if fail_open and self.item is not None:
            log.warning("OPENFT_RATE_LIMIT_FAIL_OPEN: requests go unlimited while the rate-limit storage is down")

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> RateLimiter:
        return cls(
            settings.requests_per_minute, rate_limit_storage(settings, engine), fail_open=settings.rate_limit_fail_open
        )

    def hit(self, key: str) -> float:
        """Count one request of ``key``; returns 0, or the seconds until its window resets when it is over
        the limit. Blocks on the storage (call :meth:`check` from the event loop).

        Raises:
            ServiceUnavailable: the storage cannot be reached (unless ``fail_open``).
        """
        if self.item is None:
            return 0.0
        if (wait := self._still_refused(key)) > 0:
            return wait
        try:
            if self.strategy.hit(self.item, key):
                return 0.0
            reset = self.strategy.get_window_stats(self.item, key).reset_time
        except StorageError as exc:
            if self.fail_open:
                if time.monotonic() - self._last_warning > WARN_EVERY_SECONDS:  # not once per request
                    self._last_warning = time.monotonic()
                    log.warning("rate limit not applied: its storage failed (%s)", exc.storage_error)
                return 0.0
            raise ServiceUnavailable(
                "The rate limit could not be checked: its storage is unreachable. Please try again shortly."
            ) from exc
        self._refused_until[key] = reset
        return max(reset - time.time(), 0.001)

    async def check(self, key: str) -> float:
        """:meth:`hit`, in a worker thread when the storage is a database or Redis round trip."""
        if self.item is None:
            return 0.0
        wait = self._still_refused(key)
        if wait > 0:
            return wait
        if not self._blocking:
            return self.hit(key)
        return await anyio.to_thread.run_sync(self.hit, key)

    def _still_refused(self, key: str) -> float:
        until = self._refused_until.get(key)
        if until is None:
            return 0.0
        wait = until - time.time()
        if wait <= 0:
            self._refused_until.pop(key, None)
            return 0.0
        return wait

    def error(self, key_id: str, wait: float) -> tuple[RateLimitExceeded, dict[str, Any]]:
        """The 429 for a request refused by :meth:`hit`, with its ``Retry-After`` header."""
        seconds = max(1, math.ceil(wait))
        error = RateLimitExceeded(
            f"Rate limit reached for requests per min (RPM) on API key {key_id}: Limit {self.per_minute}. "
            f"Please try again in {seconds}s."
        )
        return error, {"Retry-After": str(seconds)}


_REDIS_SCHEMES = ("redis", "rediss", "redis+unix")
_STORAGE_TIMEOUT_SECONDS = 2.0


def rate_limit_storage(settings: Settings, engine: Engine) -> Storage:
    """The counters' storage: ``settings.rate_limit_storage_url`` (a ``limits`` URL), else the database.

    Raises:
        ValueError: a URL whose scheme ``limits`` does not know.
    """
    url = settings.rate_limit_storage_url
    if not url:
        return DatabaseStorage(engine)
    # A Redis that stops answering must cost a request seconds (then a 503), not hang it.
    options: dict[str, Any] = {}
    if urlparse(url).scheme in _REDIS_SCHEMES:
        options = {"socket_timeout": _STORAGE_TIMEOUT_SECONDS, "socket_connect_timeout": _STORAGE_TIMEOUT_SECONDS}
    try:
        storage = storage_from_string(url, wrap_exceptions=True, **options)
    except ConfigurationError as exc:
        raise ValueError(f"OPENFT_RATE_LIMIT_STORAGE_URL: {exc}") from exc
    if not isinstance(storage, Storage):
        raise ValueError(f"OPENFT_RATE_LIMIT_STORAGE_URL: {url.split('://')[0]}:// is an asyncio storage")
    return storage


class RejectControlCharacters:
    """No id, name or cursor contains a control character (NUL included): such a path is 404 and such a
    query string 400, before any route or database sees them."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if _CONTROL.search(scope["path"].encode("utf-8", "surrogateescape")):
                await send_error(send, NotFound("No such object: the path contains control characters."))
                return
            if _CONTROL.search(unquote_to_bytes(scope.get("query_string", b""))):
                await send_error(send, InvalidRequest("The query string contains control characters."))
                return
        await self.app(scope, receive, send)
