"""Stored chat completions: ``GET /v1/chat/completions`` (filters ``model`` and ``metadata[k]=v``),
retrieve, update metadata, delete, and ``.../messages`` (the request's input messages).

A completion is stored when ``/v1/chat/completions`` is called with ``store: true``
(``api/inference.py``); it belongs to the caller's organization and is invisible to others.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request

from openft.api.deps import PrincipalDep
from openft.completions.service import CompletionService
from openft.completions.service import store_requested as store_requested  # api/inference.py checks requests with it
from openft.store.completions import CompletionFilter, StoredCompletionRow
from openft.types.shared import list_object

router = APIRouter(prefix="/v1/chat/completions", tags=["chat"])


async def _completions(request: Request) -> CompletionService:
    completions: CompletionService = request.app.state.completions
    return completions


CompletionsDep = Annotated[CompletionService, Depends(_completions)]


def completion_to_wire(row: StoredCompletionRow) -> dict[str, Any]:
    return {**row.completion, "metadata": row.metadata, "model": row.model}


def metadata_filter(request: Request) -> dict[str, str] | None:
    """``metadata[key]=value`` query parameters, as the official clients send them."""
    found = {
        k[len("metadata[") : -1]: v
        for k, v in request.query_params.items()
        if k.startswith("metadata[") and k.endswith("]")
    }
    return found or None


@router.get("")
def list_completions(
    request: Request,
    principal: PrincipalDep,
    completions: CompletionsDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "asc",
    model: str | None = None,
) -> dict[str, Any]:
    where = CompletionFilter(model=model, metadata=metadata_filter(request))
    rows, has_more = completions.page(principal, where, after=after, limit=limit, order=order)
    return list_object([completion_to_wire(r) for r in rows], has_more)


@router.get("/{completion_id}")
def retrieve_completion(principal: PrincipalDep, completions: CompletionsDep, completion_id: str) -> dict[str, Any]:
    return completion_to_wire(completions.get(principal, completion_id))


@router.post("/{completion_id}")
def update_completion(
    principal: PrincipalDep, completions: CompletionsDep, completion_id: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    return completion_to_wire(completions.update(principal, completion_id, body))


@router.delete("/{completion_id}")
def delete_completion(principal: PrincipalDep, completions: CompletionsDep, completion_id: str) -> dict[str, Any]:
    completions.delete(principal, completion_id)
    return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}


@router.get("/{completion_id}/messages")
def list_messages(
    principal: PrincipalDep,
    completions: CompletionsDep,
    completion_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    data, has_more = completions.messages(principal, completion_id, after=after, limit=limit, order=order)
    return list_object(data, has_more)


async def keep(request: Request, principal: Any, request_body: dict[str, Any], answer: dict[str, Any]) -> None:
    """Store a non-streamed chat completion with the request that produced it, in the caller's organization."""
    completions: CompletionService = request.app.state.completions
    await request.app.state.reads.run(completions.keep, principal, request_body, answer)
