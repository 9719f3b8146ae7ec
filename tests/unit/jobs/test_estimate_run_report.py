"""jobs/run_report.py: the estimate event at start, and the summary of what a run learned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openft.jobs.run_report import ESTIMATE_FILE, _overfitting, observe_line, start_events


def _metrics(
    step: int, epoch: int, train: float, valid: float | None = None, full: float | None = None
) -> dict[str, Any]:
    line: dict[str, Any] = {"kind": "metrics", "step": step, "epoch": epoch, "train_loss": train}
    if valid is not None:
        line["valid_loss"] = valid
    if full is not None:
        line["full_valid_loss"] = full
    return line


def _seen(*lines: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for line in lines:
        observe_line(seen, line)
    return seen


def test_rise_over_the_last_epoch_is_overfitting() -> None:
    seen = _seen(_metrics(5, 1, 2.0, 1.5, 1.4), _metrics(8, 2, 1.0, 1.3), _metrics(10, 2, 0.5, 1.6, 1.7))
    text = _overfitting(seen)
    assert text is not None and text.startswith("validation loss rose in the last epoch (1.400 at step 5 -> 1.700)")
    assert "overfitting" in text


def test_a_fall_is_said_too() -> None:
    seen = _seen(_metrics(5, 1, 2.0, 1.5, 1.4), _metrics(10, 2, 0.5, 1.2, 1.1))
    assert _overfitting(seen) == "validation loss fell in the last epoch (1.400 at step 5 -> 1.100)"


def test_one_epoch_compares_with_its_lowest_validation_loss() -> None:
    seen = _seen(_metrics(2, 1, 2.0, 1.5), _metrics(4, 1, 1.5, 1.1), _metrics(6, 1, 1.0, 1.3, 1.25))
    text = _overfitting(seen)
    assert text is not None and text.startswith("validation loss rose in the last epoch (1.100 at step 4 -> 1.250)")


def test_repeated_lines_and_no_validation() -> None:
    line = _metrics(3, 1, 1.0)
    seen = _seen(line, line)
    assert seen["last"] == line and _overfitting(seen) is None
    model_loaded = {"kind": "message", "message": "Loaded model", "data": {"device": "cuda"}}
    assert _seen(model_loaded)["device"] == "cuda"


def test_start_event_states_the_estimate(tmp_path: Path) -> None:
    assert start_events(tmp_path) == []
    estimate = {
        "trained_tokens": 12345, "n_steps": 18, "estimated_seconds": 95.0, "estimated_seconds_source": "calibration",
        "peak_memory_bytes": 3 * 1024**3, "memory_limit_bytes": 8 * 1024**3, "fits": True, "reason": None,
    }  # fmt: skip
    (tmp_path / ESTIMATE_FILE).parent.mkdir()
    (tmp_path / ESTIMATE_FILE).write_text(json.dumps(estimate))
    [event] = start_events(tmp_path)
    assert event.message == (
        "Estimate: 12,345 trained tokens in 18 steps, about 1.6 min (throughput of a calibration run); "
        "peak memory about 3.00 GiB of 8.0 GiB"
    )
    assert event.level == "info" and event.data == {"estimate": estimate}
    (tmp_path / ESTIMATE_FILE).write_text(json.dumps({**estimate, "fits": False, "reason": "Too big."}))
    [warning] = start_events(tmp_path)
    assert warning.level == "warn" and warning.message.endswith("Too big.")
