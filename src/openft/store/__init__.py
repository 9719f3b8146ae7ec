"""Persistence: one SQLAlchemy store for SQLite (default) and PostgreSQL; the jobs table is the queue."""

from __future__ import annotations

from openft.store.database import Store, open_store

__all__ = ["Store", "open_store"]
