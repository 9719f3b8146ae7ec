"""The migrations build the schema that ``store/schema.py`` describes, on SQLite and on PostgreSQL.

A database upgraded by every migration is compared with ``schema.metadata`` by Alembic's autogenerate:
a table, column, type, nullability, index or unique constraint that one side has and the other lacks
is a difference, and fails here with its description.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from openft.store import open_store
from openft.store.schema import metadata

pytestmark = pytest.mark.integration


def _differences(database_url: str) -> list[Any]:
    store = open_store(database_url)  # upgraded to the newest migration
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        store.engine.dispose()


def test_the_migrations_build_schema_py(database_url: str) -> None:
    assert _differences(database_url) == []


def test_a_difference_is_found(database_url: str) -> None:
    """The comparison sees what a forgotten migration would leave out (so the test above can fail)."""
    from sqlalchemy import Column, Integer, MetaData, Table

    store = open_store(database_url)
    try:
        extended = MetaData()
        for table in metadata.sorted_tables:
            table.to_metadata(extended)
        Table("not_migrated", extended, Column("id", Integer, primary_key=True))
        extended.tables["jobs"].append_column(Column("not_migrated_column", Integer))
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            found = {(d[0], getattr(d[-1], "name", None)) for d in compare_metadata(context, extended) if d}
    finally:
        store.engine.dispose()
    assert ("add_table", "not_migrated") in found
    assert ("add_column", "not_migrated_column") in found
