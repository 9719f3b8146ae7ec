"""The OpenAPI document says what the server really answers, errors included.

Every error is OpenAI's envelope (:class:`ErrorResponse`). FastAPI documents a 422 for invalid
requests, but openft answers those with 400 (``api/errors.py``), so the 422s are replaced. Every
``/v1`` operation can also answer 401 (bad key), 413 (body too large) and 429 (rate limit), and one
with a path parameter or a body naming other objects 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from openft.types.shared import ErrorResponse

_REASONS = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    404: "No such object (or it belongs to another organization)",
    413: "Request body too large",
    429: "Rate limit reached; see Retry-After",
}
_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the given error statuses, each with OpenAI's error envelope."""
    return {status: {"model": ErrorResponse, "description": _REASONS.get(status, "Error")} for status in statuses}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _REASONS[status], "content": {"application/json": {"schema": _REF}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}
    return response


def _document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").items():
        if name == "$defs":
            schemas.update(schema)
    schemas["ErrorResponse"] = {
        k: v
        for k, v in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").items()
        if k != "$defs"
    }
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            statuses = [400]
            if path.startswith("/v1"):
                statuses += [401, 413, 429]
            # An id in the path, or one in a created object's body (a model, a file), may name nothing.
            if "{" in path or method == "post":
                statuses.append(404)
            for status in statuses:
                responses.setdefault(str(status), _error_response(status))
    return doc


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) return the corrected document, built once."""
    cache: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = _document(app)
        return cache["doc"]

    app.openapi = openapi  # type: ignore[method-assign]  # replacing it is FastAPI's documented extension point
