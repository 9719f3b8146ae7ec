"""Limits applied before a request reaches its route: request size (413), requests per minute per key
(429), and no control characters in paths (404) or query strings (400).

Both are pure ASGI so they act on the byte stream: a body over its limit is refused from its
``Content-Length`` before a byte is read, and a body that lies about its length (or is chunked) is cut
off as soon as the bytes received pass the limit.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openft.errors import InvalidRequest, NotFound, OpenFTError, RateLimitExceeded, RequestTooLarge
from openft.settings import Settings

MULTIPART_OVERHEAD = 1024 * 1024
"""Room for multipart boundaries and form fields around a file's bytes."""

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
    """A token bucket per API key: ``per_minute`` requests a minute, refilled continuously."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float:
        """Take one request from ``key``'s bucket; returns 0, or the seconds to wait when it is empty."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate

    def error(self, key_id: str, wait: float) -> tuple[RateLimitExceeded, dict[str, Any]]:
        """The 429 for a request refused by :meth:`hit`, with its ``Retry-After`` header."""
        seconds = max(1, math.ceil(wait))
        error = RateLimitExceeded(
            f"Rate limit reached for requests per min (RPM) on API key {key_id}: Limit {self.per_minute}. "
            f"Please try again in {seconds}s."
        )
        return error, {"Retry-After": str(seconds)}


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
