"""Shapes shared by several resources: the error envelope and cursor pages."""

from __future__ import annotations

from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Error(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: Error


class CursorPage(BaseModel, Generic[T]):
    """``{"object": "list", "data": [...], "has_more": ...}`` with ``first_id``/``last_id``."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class _HasId(Protocol):
    id: str


P = TypeVar("P", bound=_HasId)


def page_of(data: list[P], has_more: bool) -> CursorPage[P]:
    """A page whose ``first_id``/``last_id`` name its first and last items (None when empty)."""
    return CursorPage(
        data=data, has_more=has_more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
    )


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """The same page as a plain ``list`` object, for wire objects kept as dicts (each with an ``id``)."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
