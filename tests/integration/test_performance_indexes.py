"""Lookups that run per request or per job creation are index searches, not scans of every job.

The schema comes from the migrations (``open_store`` upgrades to the newest), so this also checks
that migration 0004 creates the indexes that ``store/schema.py`` declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect

from openft.store import Store, open_store
from openft.store.quotas import count_jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'openft.db'}")


def sqlite_plans(store: Store, call: Any) -> list[str]:
    """SQLite's query plan of every SELECT that ``call`` runs."""
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
    with store.engine.connect() as conn:
        return [
            "\n".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all())
            for sql, params in statements
        ]


def test_the_migrations_create_the_performance_indexes(store: Store) -> None:
    inspector = inspect(store.engine)
    assert {"ix_jobs_fine_tuned_model", "ix_jobs_org_status"} <= {i["name"] for i in inspector.get_indexes("jobs")}
    assert "ix_job_checkpoints_org_seq" in {i["name"] for i in inspector.get_indexes("job_checkpoints")}


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda st: st.find_job_by_model("ft:openft/tiny-chat:personal::abc"), id="find_job_by_model"),
        pytest.param(lambda st: count_jobs(st, "org-personal", ["queued", "running"]), id="count_active_jobs"),
        pytest.param(lambda st: st.list_organization_checkpoints("org-personal"), id="organization_checkpoints"),
    ],
)
def test_lookup_is_an_index_search(store: Store, call: Any) -> None:
    for plan in sqlite_plans(store, lambda: call(store)):
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
        for table in ("jobs", "job_checkpoints"):
            assert f"SCAN {table}\n" not in plan + "\n", plan
