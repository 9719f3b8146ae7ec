"""CompletionService: chat completions stored with ``store: true``, behind the HTTP layer.

``/v1/chat/completions`` stores a non-streamed answer with the request that produced it (:meth:`keep`);
``GET|POST|DELETE /v1/chat/completions/{id}`` and ``.../messages`` read, relabel and delete them. Each
belongs to the caller's organization and is invisible to others. An eval's ``stored_completions`` data
source reads the same records (``evals/executor.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from openft.errors import InvalidRequest
from openft.evals.spec import check_metadata
from openft.store.completions import CompletionFilter, CompletionRecords, StoredCompletionRow
from openft.tenancy import Principal

_NOT_KEPT = ("store", "metadata", "stream")
"""Request fields left out of the stored request: they say how to answer, not what was asked."""


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


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A request message as OpenAI lists it: ``content`` as text, the parts (if any) in ``content_parts``."""
    content = message.get("content")
    parts = content if isinstance(content, list) else None
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict)) if parts is not None else content
    return {**message, "content": text, "content_parts": parts}


class CompletionService:
    """The stored chat completions of each organization."""

    def __init__(self, records: CompletionRecords):
        self.records = records

    def keep(self, principal: Principal, request: dict[str, Any], answer: dict[str, Any]) -> StoredCompletionRow:
        """Store ``answer`` (a ``chat.completion`` object) with the ``request`` body that produced it."""
        metadata = request.get("metadata") or None
        row = StoredCompletionRow(
            id=answer["id"],
            organization_id=principal.organization_id,
            project_id=principal.project_id,
            model=answer["model"],
            request={k: v for k, v in request.items() if k not in _NOT_KEPT},
            completion={**answer, "metadata": metadata},
            created_at=answer["created"],
            metadata=metadata,
        )
        self.records.insert(row)
        return row

    def page(
        self, principal: Principal, where: CompletionFilter, *, after: str | None, limit: int, order: str
    ) -> tuple[list[StoredCompletionRow], bool]:
        """A page of the organization's completions that ``where`` selects, and whether more follow."""
        return self.records.page(principal.organization_id, where, after=after, limit=limit, order=order)

    def get(self, principal: Principal, completion_id: str) -> StoredCompletionRow:
        """Raises: CompletionNotFound: absent or another organization's."""
        return self.records.get(completion_id, principal.organization_id)

    def update(self, principal: Principal, completion_id: str, params: dict[str, Any]) -> StoredCompletionRow:
        """Replace the completion's metadata with ``params["metadata"]`` (null clears it).

        Raises:
            InvalidRequest: ``metadata`` is missing or not a map of at most 16 short strings.
            CompletionNotFound: as :meth:`get`.
        """
        if "metadata" not in params:
            raise InvalidRequest("metadata is required.", param="metadata")
        metadata = params["metadata"]
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("metadata must be an object.", param="metadata")
        check_metadata(metadata)
        return self.records.update_metadata(completion_id, principal.organization_id, metadata)

    def delete(self, principal: Principal, completion_id: str) -> None:
        """Raises: CompletionNotFound: as :meth:`get`."""
        self.records.delete(completion_id, principal.organization_id)

    def messages(
        self, principal: Principal, completion_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the completion's request messages (ids ``{completion_id}-{index}``), after the message
        ``after`` (an unknown one gives the first page); and whether more follow.

        Raises:
            CompletionNotFound: as :meth:`get`.
        """
        row = self.get(principal, completion_id)
        messages = [
            {**_message(m), "id": f"{completion_id}-{i}"} for i, m in enumerate(row.request.get("messages", []))
        ]
        if order == "desc":
            messages.reverse()
        ids = [m["id"] for m in messages]
        start = ids.index(after) + 1 if after in ids else 0
        return messages[start : start + limit], start + limit < len(messages)
