"""Structure: ``jobs/transitions.py`` is the only module that changes a job's status.

The store's SQL for it lives in ``store/job_writes.py`` (called through ``Store.change_job`` and
``Store.claim_next_job``); ``Store.update_job`` refuses a ``status`` (tested on real databases in
tests/integration/test_transitions.py). This scans every module of the package for any other way
to write the jobs table's status column.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import openft

PACKAGE = Path(openft.__file__).parent
TRANSITIONS = "jobs/transitions.py"
JOB_WRITES = "store/job_writes.py"
STATUS_CALLS = {"update_job", "change_job", "claim_next_job", "claim_job", "JobChange"}
RAW_SQL = re.compile(r"\b(update\s+\"?jobs\"?\s+set|insert\s+into\s+\"?jobs\"?)\b", re.IGNORECASE)


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _writes_jobs_table(call: ast.Call) -> bool:
    """``update(s.jobs)`` or ``update(jobs)`` (inserting a new job in its first status is creation, not a change)."""
    return _name(call.func) == "update" and bool(call.args) and _name(call.args[0]) == "jobs"


def test_only_the_transition_module_passes_a_status_to_the_store() -> None:
    # Store.change_job and Store.claim_next_job (store/database.py) hand their arguments on to job_writes.
    allowed = {TRANSITIONS, JOB_WRITES, "store/database.py"}
    offenders = []
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _name(node.func) not in STATUS_CALLS or path in allowed:
                continue
            keywords = {k.arg for k in node.keywords}
            if {"status", "to_status"} & keywords or None in keywords:
                offenders.append(f"{path}:{node.lineno} {_name(node.func)}({', '.join(map(str, keywords))})")
            if _name(node.func) in ("change_job", "JobChange"):
                offenders.append(f"{path}:{node.lineno} {_name(node.func)} outside {TRANSITIONS}")
    assert offenders == []
    database = _modules()["store/database.py"]
    assert not [n for n in ast.walk(database) if isinstance(n, ast.Call) and _name(n.func) == "JobChange"]


def test_no_other_module_updates_the_jobs_table() -> None:
    writes = {
        path: [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and _writes_jobs_table(node)]
        for path, tree in _modules().items()
    }
    # store/database.py keeps one, in update_job, for other fields (it refuses a status: see below).
    assert {path: lines for path, lines in writes.items() if lines and path != JOB_WRITES} == {
        "store/database.py": writes["store/database.py"]
    }
    assert len(writes["store/database.py"]) == 1
    raw = [p for p in PACKAGE.rglob("*.py") if RAW_SQL.search(p.read_text())]
    assert raw == []


def test_update_job_refuses_a_status_before_it_builds_a_query() -> None:
    source = (PACKAGE / "store/database.py").read_text()
    body = source[source.index("    def update_job(") : source.index("    def change_job(")]
    assert body.index('if "status" in values') < body.index("update(s.jobs)")


def test_the_scan_sees_a_status_write() -> None:
    """The scan above would catch the shapes it looks for."""
    tree = ast.parse("store.update_job(j, status='x')\nupdate(s.jobs).values(status='x')\nJobChange(status='x')")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert any(_writes_jobs_table(c) for c in calls)
    assert sum(_name(c.func) in STATUS_CALLS and any(k.arg == "status" for k in c.keywords) for c in calls) == 2
    assert RAW_SQL.search('conn.execute(text("UPDATE jobs SET status = :s"))')
