"""Render every error, ours or the framework's, as OpenAI's envelope ``{"error": {...}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from openft.errors import OpenFTError

log = logging.getLogger(__name__)


def _envelope(
    status: int, message: str, type_: str, param: str | None, code: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _openft_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenFTError)
    return _envelope(exc.http_status, exc.message, exc.error_type, exc.param, exc.code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    elif first.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    else:
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
    if first.get("type") == "json_invalid":
        message, param = "We could not parse the JSON body of your request.", None
    return _envelope(400, message, "invalid_request_error", param, "invalid_request")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    message = (
        "Unknown request URL. Please check the URL and method." if exc.status_code in (404, 405) else str(exc.detail)
    )
    return _envelope(exc.status_code, message, type_, None, None, dict(exc.headers or {}))


async def _unstorable(_request: Request, exc: Exception) -> JSONResponse:
    # Input that passed validation but that the database refuses (NUL, unpaired surrogates, oversized text)
    # is still the caller's mistake, not a server error.
    log.info("request refused by the database: %s", exc.__class__.__name__)
    message = "The request contains text the server cannot store (NUL characters, unpaired surrogates or too long)."
    return _envelope(400, message, "invalid_request_error", None, "invalid_value")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return _envelope(500, "The server had an error while processing your request.", "server_error", None, None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpenFTError, _openft_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(UnicodeEncodeError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)
