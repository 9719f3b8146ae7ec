"""Stored chat completions: ``GET /v1/chat/completions`` (filters ``model`` and ``metadata[k]=v``),
retrieve, update metadata, delete, and ``.../messages`` (the request's input messages).

A completion is stored when ``/v1/chat/completions`` is called with ``store: true``
(``api/inference.py``); it belongs to the caller's organization and is invisible to others.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request

from openft.api.deps import PrincipalDep
from openft.errors import InvalidRequest
from openft.evals.spec import check_metadata
from openft.store.completions import CompletionFilter, CompletionStore, StoredCompletionRow

router = APIRouter(prefix="/v1/chat/completions", tags=["chat"])


async def _completions(request: Request) -> CompletionStore:
    return CompletionStore(request.app.state.store.engine)


CompletionsDep = Annotated[CompletionStore, Depends(_completions)]


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
    rows, has_more = completions.page(principal.organization_id, where, after=after, limit=limit, order=order)
    data = [completion_to_wire(r) for r in rows]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@router.get("/{completion_id}")
def retrieve_completion(principal: PrincipalDep, completions: CompletionsDep, completion_id: str) -> dict[str, Any]:
    return completion_to_wire(completions.get(completion_id, principal.organization_id))


@router.post("/{completion_id}")
def update_completion(
    principal: PrincipalDep, completions: CompletionsDep, completion_id: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    if "metadata" not in body:
        raise InvalidRequest("metadata is required.", param="metadata")
    metadata = body["metadata"]
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be an object.", param="metadata")
    check_metadata(metadata)
    row = completions.update_metadata(completion_id, principal.organization_id, metadata)
    return completion_to_wire(row)


@router.delete("/{completion_id}")
def delete_completion(principal: PrincipalDep, completions: CompletionsDep, completion_id: str) -> dict[str, Any]:
    completions.delete(completion_id, principal.organization_id)
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
    row = completions.get(completion_id, principal.organization_id)
    messages = [{**_message(m), "id": f"{completion_id}-{i}"} for i, m in enumerate(row.request.get("messages", []))]
    if order == "desc":
        messages.reverse()
    ids = [m["id"] for m in messages]
    start = ids.index(after) + 1 if after in ids else 0
    data = messages[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(messages),
    }


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    parts = content if isinstance(content, list) else None
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict)) if parts is not None else content
    return {**message, "content": text, "content_parts": parts}


def store_requested(extra: dict[str, Any] | None) -> bool:
    """Whether a chat completion request asks to be stored (``store: true``); checks its ``metadata``
    first, so a bad one is a 400 before anything is generated.

    Raises:
        InvalidRequest: ``metadata`` is not a map of at most 16 short strings.
    """
    extra = extra or {}
    metadata = extra.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest("metadata must be an object.", param="metadata")
        check_metadata(metadata)
    return extra.get("store") is True


async def keep(request: Request, principal: Any, request_body: dict[str, Any], answer: dict[str, Any]) -> None:
    """Store a non-streamed chat completion with the request that produced it, in the caller's organization."""
    metadata = request_body.get("metadata") or None
    row = StoredCompletionRow(
        id=answer["id"],
        organization_id=principal.organization_id,
        project_id=principal.project_id,
        model=answer["model"],
        request={k: v for k, v in request_body.items() if k not in ("store", "metadata", "stream")},
        completion={**answer, "metadata": metadata},
        created_at=answer["created"],
        metadata=metadata,
    )
    store = CompletionStore(request.app.state.store.engine)
    await request.app.state.reads.run(store.insert, row)
