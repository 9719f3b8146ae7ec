"""The one way a database row becomes a row dataclass, and a row dataclass becomes column values.

A :class:`RowMapper` pairs a dataclass with a table. Statements select (or return) :attr:`RowMapper.columns`,
the table's columns named by the dataclass's fields in field order, so a result row becomes the dataclass
positionally: no per-row dict, no name filtering (``seq`` and any column the dataclass does not carry are
simply not selected).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Column, Select, Table, select
from sqlalchemy.engine import Row

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


class RowMapper(Generic[R]):
    """Rows of ``table`` as instances of the dataclass ``row_class``."""

    def __init__(self, row_class: type[R], table: Table):
        self.row_class = row_class
        self._make: Callable[..., R] = row_class
        self.table = table
        self.fields: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(row_class))
        self.columns: tuple[Column[Any], ...] = tuple(table.c[name] for name in self.fields)

    def select(self) -> Select[Any]:
        """``SELECT`` of :attr:`columns` from the table."""
        return select(*self.columns)

    def one(self, row: Row[Any]) -> R:
        """A row of a statement that selected :attr:`columns`."""
        return self._make(*row)

    def maybe(self, row: Row[Any] | None) -> R | None:
        return None if row is None else self._make(*row)

    def all(self, rows: Iterable[Row[Any]]) -> list[R]:
        return [self._make(*row) for row in rows]

    def values(self, obj: R) -> dict[str, Any]:
        """The column values of ``obj``, for an ``INSERT``."""
        return {name: getattr(obj, name) for name in self.fields}
