"""The store contract suites' fixtures: one store per backend (in memory, SQLite, PostgreSQL), emptied per test.

Imported into each contract module (``from store_backends import backend_fixture, store_fixture``), so
every test there that takes ``store`` runs on all three.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from openft.store import InMemoryStore, SqlStore, Store, open_store
from openft.store import schema as s
from postgres_databases import postgres_database


@pytest.fixture(
    name="backend",
    scope="module",
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One database per backend for the module; each test starts from empty tables (see ``store``)."""
    if request.param == "memory":
        yield InMemoryStore()
        return
    if request.param == "sqlite":
        sql = open_store(f"sqlite:///{tmp_path_factory.mktemp('contract') / 'openft.db'}")
        yield sql
        sql.engine.dispose()
        return
    for url in postgres_database():
        sql = open_store(url)
        yield sql
        sql.engine.dispose()


@pytest.fixture(name="store")
def store_fixture(backend: Store) -> Store:
    if isinstance(backend, InMemoryStore):
        return InMemoryStore()
    assert isinstance(backend, SqlStore)
    with backend.engine.begin() as conn:
        for table in reversed(s.metadata.sorted_tables):
            conn.execute(delete(table))
    return backend
