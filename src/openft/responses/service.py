"""Making, storing and reading ``response`` objects; generation itself is the API's call to the backend.

A response is made in two steps around that call: :meth:`ResponseService.begin` checks the request and
builds the conversation (the stored items of ``previous_response_id``, its output, then the new input;
``instructions`` are never carried over, as in OpenAI's API) as chat messages; :meth:`ResponseService.complete`
turns the answer into the response object and stores it when ``store`` is true.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Literal

from openft.responses.items import chat_messages, check_unique_ids, input_items, new_item_id
from openft.responses.request import ResponseCreateRequest, wire_tools
from openft.store.responses import ResponseRecords
from openft.tenancy import Principal
from openft.types.shared import list_object

Status = Literal["in_progress", "completed", "incomplete", "failed"]


@dataclass(frozen=True)
class Turn:
    """One response being made."""

    id: str
    created_at: int
    request: ResponseCreateRequest
    items: list[dict[str, Any]]
    """Every input item of the conversation, this request's own input last (what ``input_items`` lists)."""
    messages: list[dict[str, Any]]
    """The conversation as chat messages, ``instructions`` first (without the turns truncation dropped)."""
    start: int = 0
    """Index in ``items`` of the first item the model sees (``truncation: auto`` drops whole turns)."""

    def without_oldest_turn(self) -> Turn | None:
        """The same turn with the oldest remaining user turn (the user message and every item up to the
        next user message) dropped from what the model sees; None when only the last turn is left.

        Truncation never starts at a function call or its output, so a call and its output leave together.
        """
        later_users = [
            i
            for i in range(self.start + 1, len(self.items))
            if self.items[i]["type"] == "message" and self.items[i]["role"] == "user"
        ]
        if not later_users:
            return None
        start = later_users[0]
        messages = chat_messages(self.items[start:], self.request.instructions)
        return dataclasses.replace(self, messages=messages, start=start)


def _as_context(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as an input item of the next turn (without its logprobs, which no model reads)."""
    if item.get("type") != "message":
        return item
    content = [{**part, "logprobs": []} if part.get("type") == "output_text" else part for part in item["content"]]
    return {**item, "content": content}


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """OpenAI's ``usage`` of a response (no cache and no reasoning: those details are 0)."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    turn: Turn,
    *,
    status: Status,
    output: list[dict[str, Any]],
    token_usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object of ``turn`` with OpenAI's fields, in the state given."""
    request = turn.request
    finished = status in ("completed", "incomplete")
    return {
        "id": turn.id,
        "object": "response",
        "created_at": turn.created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "prompt_cache_key": request.prompt_cache_key,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": request.safety_identifier,
        "service_tier": "default",
        "store": request.store is not False,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": {"format": request.text_format().wire(), "verbosity": "medium"},
        "tool_choice": request.tool_choice or "auto",
        "tools": wire_tools(request.tools),
        "top_logprobs": request.top_logprobs or 0,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "truncation": request.truncation or "disabled",
        "usage": token_usage if finished else None,
        "user": request.user,
        "metadata": request.metadata or {},
    }


class ResponseService:
    """Responses of each organization: made from requests, stored, read back and deleted."""

    def __init__(self, store: ResponseRecords):
        self.store = store

    def begin(self, principal: Principal, request: ResponseCreateRequest) -> Turn:
        """Check ``request`` and build its conversation.

        Raises:
            InvalidRequest: a parameter or input item openft cannot honour, named.
            ResponseNotFound: ``previous_response_id`` is unknown to the caller's organization.
        """
        request.refuse_unsupported()
        new = input_items(request.input)
        context: list[dict[str, Any]] = []
        if request.previous_response_id is not None:
            previous = self.store.conversation(
                request.previous_response_id, principal.organization_id, param="previous_response_id"
            )
            context = previous.input_items + [_as_context(item) for item in previous.body["output"]]
        check_unique_ids(context, new)
        items = context + new
        return Turn(
            id=new_item_id("resp"),
            created_at=int(time.time()),
            request=request,
            items=items,
            messages=chat_messages(items, request.instructions),
        )

    def complete(
        self, principal: Principal, turn: Turn, output: list[dict[str, Any]], token_usage: dict[str, Any]
    ) -> dict[str, Any]:
        """The finished response object of ``turn``, stored unless the request said ``store: false``.

        It is ``incomplete`` when its message was cut short by ``max_output_tokens``.
        """
        cut = any(item.get("status") == "incomplete" for item in output)
        body = response_object(
            turn, status="incomplete" if cut else "completed", output=output, token_usage=token_usage
        )
        self._store(principal, turn, body)
        return body

    def fail(self, principal: Principal, turn: Turn, message: str) -> dict[str, Any]:
        """The failed response object of ``turn`` (generation broke off), stored as ``complete`` stores."""
        error = {"code": "server_error", "message": message}
        body = response_object(turn, status="failed", output=[], token_usage=None, error=error)
        self._store(principal, turn, body)
        return body

    def _store(self, principal: Principal, turn: Turn, body: dict[str, Any]) -> None:
        if turn.request.store is not False:
            self.store.insert(
                body, turn.items, organization_id=principal.organization_id, project_id=principal.project_id
            )

    def retrieve(self, principal: Principal, response_id: str) -> dict[str, Any]:
        """Raises ResponseNotFound when absent or another organization's."""
        return self.store.get(response_id, principal.organization_id)

    def delete(self, principal: Principal, response_id: str) -> dict[str, Any]:
        """The deletion object. Raises ResponseNotFound when absent or another organization's."""
        self.store.delete(response_id, principal.organization_id)
        return {"id": response_id, "object": "response", "deleted": True}

    def input_items(
        self,
        principal: Principal,
        response_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> dict[str, Any]:
        """A page of the response's input items as OpenAI's ``list`` object."""
        data, has_more = self.store.input_items(
            response_id, principal.organization_id, after=after, limit=limit, order=order
        )
        return list_object(data, has_more)
