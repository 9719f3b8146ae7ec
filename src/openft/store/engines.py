"""Database engines for SQLite and PostgreSQL, tuned for openft's access pattern."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

SQLITE_POOL_SIZE = 48
SQLITE_MMAP_BYTES = 1 << 30


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets the API read while the worker writes; busy_timeout makes writers queue instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Reads through a memory map share the OS page cache instead of copying pages into each
    # connection's own cache with read() calls.
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite with WAL, a busy timeout and a pool as large as the threads that query;
    PostgreSQL with a liveness check at checkout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pool as many connections as there are threads that query at once (the API's thread pool, 40 by
        # default, and the worker's): a connection opened past the pool runs the pragmas, starts with an
        # empty page cache and is closed after one request.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)
