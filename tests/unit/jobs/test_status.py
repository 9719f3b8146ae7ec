"""The job status machine."""

from __future__ import annotations

import itertools

from openft.jobs import status as st


def test_lifecycle_paths() -> None:
    path = [st.VALIDATING, st.QUEUED, st.RUNNING, st.SUCCEEDED]
    assert all(st.can_transition(a, b) for a, b in itertools.pairwise(path))
    assert st.can_transition(st.RUNNING, st.PAUSED) and st.can_transition(st.PAUSED, st.QUEUED)
    for terminal in st.TERMINAL:
        assert not any(st.can_transition(terminal, other) for other in st.TRANSITIONS)
    assert not st.can_transition(st.VALIDATING, st.RUNNING)
    assert st.sources_of(st.CANCELLED) == {st.VALIDATING, st.QUEUED, st.RUNNING, st.PAUSED}
