"""Shapes shared by several resources: the error envelope and cursor pages."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

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
