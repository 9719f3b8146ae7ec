"""Event listings are keyset pages served by indexes: the database's own query plan for
the statements the Store runs, with tens of thousands of events in the table, has no full scan and
no sort."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, insert, text

from openft.settings import Settings
from openft.store import Store, open_store
from openft.store import schema as s

pytestmark = pytest.mark.integration
N_EVENTS = 20_000


def _plans(store: Store, call: Any) -> list[str]:
    """The query plan of every SELECT ``call`` runs, as one text each."""
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    assert statements
    prefix = "EXPLAIN " if store.is_postgres else "EXPLAIN QUERY PLAN "
    plans = []
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
            plans.append("\n".join(" ".join(str(c) for c in row) for row in rows))
    return plans


def test_event_pages_use_the_job_seq_index(settings: Settings) -> None:
    settings.ensure_dirs()
    store = open_store(settings.sqlalchemy_url)
    rows = [
        {
            "id": f"ftevent-{i:08d}",
            # An old job's events first, then many newer jobs interleaved after it.
            "job_id": "ftjob-old" if i < 100 else f"ftjob-{i % 50:04d}",
            "created_at": 1_700_000_000 + i,
            "level": "info",
            "type": "message",
            "message": f"event {i}",
            "data": None,
        }
        for i in range(N_EVENTS)
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(s.job_events), rows)
        conn.execute(text("ANALYZE"))
    first, has_more = store.list_events("ftjob-old", limit=20)
    assert has_more and [e.message for e in first] == [f"event {i}" for i in range(99, 79, -1)]
    plans = _plans(store, lambda: store.list_events("ftjob-old", limit=20))
    plans += _plans(store, lambda: store.list_events("ftjob-old", after=first[-1].id, limit=20))
    plans += _plans(store, lambda: store.list_events("ftjob-0007", limit=20))
    for plan in plans:
        if store.is_postgres:
            assert "Seq Scan" not in plan and "Sort" not in plan, plan
        else:
            assert "SCAN " not in plan.replace("SCAN CONSTANT ROW", "") and "TEMP B-TREE" not in plan, plan
    assert any("ix_job_events_job_seq" in plan for plan in plans), plans
