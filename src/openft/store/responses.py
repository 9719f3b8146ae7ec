"""Persistence of stored Responses API objects (``store: true``), per organization.

A response is kept whole, as it was returned (``body``), beside the input items of its conversation:
the items of every earlier turn (inputs and outputs) and then its own input, as OpenAI's
``input_items`` lists them. So a conversation continues from its last response in one read, and
deleting an earlier response leaves the later ones whole.

Its own small seam, :class:`ResponseRecords` (reached as ``store.responses``): :class:`SqlResponses`
here, ``MemoryResponses`` in ``store/memory_answers.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import Engine, delete, insert, select

from openft.errors import InvalidRequest, NotFound
from openft.store import schema as s

_r, _items = s.responses, s.response_input_items


class ResponseNotFound(NotFound):
    """No such response."""

    default_code = "response_not_found"


@dataclass(frozen=True)
class StoredResponse:
    """A stored response: its object and the input items of its conversation, oldest first."""

    body: dict[str, Any]
    input_items: list[dict[str, Any]]


def response_not_found(response_id: str, param: str = "response_id") -> ResponseNotFound:
    return ResponseNotFound(f"Response with id '{response_id}' not found.", param=param)


def unknown_input_item(item_id: str, response_id: str) -> InvalidRequest:
    return InvalidRequest(f"No input item with id '{item_id}' in response '{response_id}'.", param="after")


class ResponseRecords(Protocol):
    """Stored responses and the input items of their conversations, each scoped by organization."""

    def insert(
        self, body: dict[str, Any], input_items: list[dict[str, Any]], *, organization_id: str, project_id: str | None
    ) -> None:
        """Store ``body`` (a ``response`` object) and its conversation's ``input_items`` in one transaction."""
        ...

    def get(self, response_id: str, organization_id: str, *, param: str = "response_id") -> dict[str, Any]:
        """The response object.

        Raises:
            ResponseNotFound: absent or another organization's (``param`` names the request's field).
        """
        ...

    def conversation(self, response_id: str, organization_id: str, *, param: str) -> StoredResponse:
        """The response and every input item of its conversation, in order.

        Raises:
            ResponseNotFound: as :meth:`get`.
        """
        ...

    def delete(self, response_id: str, organization_id: str) -> None:
        """The response and its input items. Raises: ResponseNotFound: as :meth:`get`."""
        ...

    def input_items(
        self,
        response_id: str,
        organization_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the response's input items, after the item ``after``; and whether more follow.

        Raises:
            ResponseNotFound: as :meth:`get`.
            InvalidRequest: the response has no input item ``after``.
        """
        ...


class SqlResponses:
    """:class:`ResponseRecords` in the ``responses`` and ``response_input_items`` tables."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def insert(
        self, body: dict[str, Any], input_items: list[dict[str, Any]], *, organization_id: str, project_id: str | None
    ) -> None:
        row = {
            "id": body["id"],
            "organization_id": organization_id,
            "project_id": project_id,
            "model": body["model"],
            "previous_response_id": body.get("previous_response_id"),
            "created_at": int(body["created_at"]),
            "body": json.dumps(body),
        }
        with self.engine.begin() as conn:
            conn.execute(insert(_r).values(**row))
            if input_items:
                conn.execute(
                    insert(_items),
                    [{"response_id": body["id"], "id": it["id"], "item": json.dumps(it)} for it in input_items],
                )

    def get(self, response_id: str, organization_id: str, *, param: str = "response_id") -> dict[str, Any]:
        query = select(_r.c.body).where(_r.c.id == response_id, _r.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            body = conn.execute(query).scalar()
        if body is None:
            raise response_not_found(response_id, param)
        loaded: dict[str, Any] = json.loads(body)
        return loaded

    def conversation(self, response_id: str, organization_id: str, *, param: str) -> StoredResponse:
        with self.engine.connect() as conn:
            body = conn.execute(
                select(_r.c.body).where(_r.c.id == response_id, _r.c.organization_id == organization_id)
            ).scalar()
            if body is None:
                raise response_not_found(response_id, param)
            rows = conn.execute(select(_items.c.item).where(_items.c.response_id == response_id).order_by(_items.c.seq))
            items = [json.loads(r[0]) for r in rows]
        return StoredResponse(body=json.loads(body), input_items=items)

    def delete(self, response_id: str, organization_id: str) -> None:
        with self.engine.begin() as conn:
            gone = conn.execute(delete(_r).where(_r.c.id == response_id, _r.c.organization_id == organization_id))
            if not gone.rowcount:
                raise response_not_found(response_id)
            conn.execute(delete(_items).where(_items.c.response_id == response_id))

    def input_items(
        self,
        response_id: str,
        organization_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> tuple[list[dict[str, Any]], bool]:
        with self.engine.connect() as conn:
            owned = conn.execute(
                select(_r.c.seq).where(_r.c.id == response_id, _r.c.organization_id == organization_id)
            ).first()
            if owned is None:
                raise response_not_found(response_id)
            query = select(_items.c.item).where(_items.c.response_id == response_id)
            if after is not None:
                cursor = conn.execute(
                    select(_items.c.seq).where(_items.c.response_id == response_id, _items.c.id == after).limit(1)
                ).scalar()
                if cursor is None:
                    raise unknown_input_item(after, response_id)
                query = query.where(_items.c.seq > cursor if order == "asc" else _items.c.seq < cursor)
            query = query.order_by(_items.c.seq.asc() if order == "asc" else _items.c.seq.desc()).limit(limit + 1)
            rows = conn.execute(query).all()
        return [json.loads(r[0]) for r in rows[:limit]], len(rows) > limit
