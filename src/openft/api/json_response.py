"""Wire models rendered to JSON once, by the route that built them.

FastAPI would validate a returned model against the route's ``response_model`` again (in a thread pool
hop for a plain ``def`` route) before serializing it. A route that builds its wire model from a stored
row already has a valid one, so it returns :func:`json_response` and keeps ``response_model`` for the
OpenAPI schema only. The bytes are the same: FastAPI serializes with the same pydantic core.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_response(model: BaseModel) -> Response:
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")
