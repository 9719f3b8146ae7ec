"""Persistence behind one seam: the :class:`Store` protocol (``store/base.py``), its SQLAlchemy implementation
for SQLite (default) and PostgreSQL (``open_store``), and an in-memory twin for unit tests. The jobs table
is the queue."""

from __future__ import annotations

from openft.store.base import Conflict, Store
from openft.store.database import SqlStore, open_store
from openft.store.memory import InMemoryStore

__all__ = ["Conflict", "InMemoryStore", "SqlStore", "Store", "open_store"]
