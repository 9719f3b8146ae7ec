"""The status machine of a fine-tuning job.

``validating_files -> queued -> running -> succeeded | failed | cancelled``, and
``running | queued -> paused -> queued`` through pause/resume. ``TRANSITIONS`` is the truth:
``jobs/transitions.py``, the only writer of a job's status, refuses any move it does not list.
"""

from __future__ import annotations

VALIDATING = "validating_files"
QUEUED = "queued"
RUNNING = "running"
PAUSED = "paused"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

TERMINAL: frozenset[str] = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE: frozenset[str] = frozenset({VALIDATING, QUEUED, RUNNING, PAUSED})

TRANSITIONS: dict[str, frozenset[str]] = {
    VALIDATING: frozenset({QUEUED, FAILED, CANCELLED}),
    # SUCCEEDED: paused and resumed while the run was finishing; it finished before it could stop.
    QUEUED: frozenset({RUNNING, PAUSED, FAILED, CANCELLED, SUCCEEDED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, PAUSED, QUEUED}),
    # SUCCEEDED: the run finished in the moment between a pause request and its checkpoint.
    PAUSED: frozenset({QUEUED, CANCELLED, FAILED, SUCCEEDED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def sources_of(target: str) -> frozenset[str]:
    """Every status from which ``target`` may be reached (for compare-and-set updates)."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)
