"""Rate-limit counters in the database: a ``limits`` storage every API process of a deployment shares.

``limits`` (its :class:`~limits.strategies.FixedWindowRateLimiter`) does the counting; this storage
keeps one row per key in ``rate_limit_counters``. A hit is one statement, an upsert that increments
the key's count, or starts its window over (count = the hit, expiry = now + the window) when the
stored window is over, and returns the new count: ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``,
atomic on PostgreSQL (the row lock) and on SQLite (one writer at a time). Rows are reused window
after window, so the table holds one row per key and limit, however long the deployment runs.
"""

from __future__ import annotations

import time
from typing import Any

from limits.storage import Storage
from sqlalchemy import Engine, bindparam, case, create_engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from openft.store import schema as s

_COUNTERS = s.rate_limit_counters


def _increment_statement(dialect: str) -> Any:
    """The upsert-increment, built once (SQLAlchemy then reuses its compiled form)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_COUNTERS).values(
        key=bindparam("key"), count=bindparam("amount"), expires_at=bindparam("expires_at")
    )
    over = _COUNTERS.c.expires_at <= bindparam("now")
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[_COUNTERS.c.key],
        set_={
            "count": case((over, new["count"]), else_=_COUNTERS.c["count"] + new["count"]),
            "expires_at": case((over, new.expires_at), else_=_COUNTERS.c.expires_at),
        },
    ).returning(_COUNTERS.c["count"])


_LIVE = select(_COUNTERS.c["count"], _COUNTERS.c.expires_at).where(
    _COUNTERS.c.key == bindparam("key"), _COUNTERS.c.expires_at > bindparam("now")
)


def _counter_engine(engine: Engine) -> Engine:
    """The engine the counters use. SQLite: the store's own (its pragmas, its busy timeout). PostgreSQL: a
    small one of its own in autocommit, without a ping at each checkout, so that a hit is one round trip
    instead of four (ping, BEGIN, upsert, COMMIT): about half the time per request here. A connection
    found dead is retried once (:meth:`DatabaseStorage.incr`), which is what the ping was for."""
    if engine.dialect.name != "postgresql":
        return engine
    return create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_size=4, max_overflow=16)


class DatabaseStorage(Storage):
    """A ``limits`` storage (fixed windows) in the ``rate_limit_counters`` table of ``engine``.

    Errors of the database become :class:`limits.errors.StorageError` (``wrap_exceptions``), which
    the rate limiter turns into a refusal.
    """

    STORAGE_SCHEME = None  # built from the store's engine, never from a URL

    def __init__(self, engine: Engine, *, wrap_exceptions: bool = True):
        if engine.dialect.name not in ("postgresql", "sqlite"):
            raise ValueError(f"rate-limit counters need PostgreSQL or SQLite, not {engine.dialect.name}")
        super().__init__(wrap_exceptions=wrap_exceptions)
        self.engine = _counter_engine(engine)
        self._increment = _increment_statement(engine.dialect.name)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s count (a fresh window of ``expiry`` seconds if its window is over)."""
        for retry in (False, True):
            now = time.time()
            params = {"key": key, "amount": amount, "expires_at": now + expiry, "now": now}
            try:
                with self.engine.begin() as conn:
                    return int(conn.execute(self._increment, params).scalar_one())
            except DBAPIError as exc:
                # A pooled connection the server closed (a restart): once more, on a new connection.
                if retry or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def _live(self, key: str) -> tuple[int, float] | None:
        with self.engine.connect() as conn:
            row = conn.execute(_LIVE, {"key": key, "now": time.time()}).first()
        return (int(row[0]), float(row[1])) if row is not None else None

    def get(self, key: str) -> int:
        live = self._live(key)
        return live[0] if live is not None else 0

    def get_expiry(self, key: str) -> float:
        live = self._live(key)
        return live[1] if live is not None else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return conn.execute(delete(_COUNTERS)).rowcount

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(_COUNTERS).where(_COUNTERS.c.key == key))
