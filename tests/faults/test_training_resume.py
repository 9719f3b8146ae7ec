"""A training process killed at any step, or asked to stop, continues from its full-state checkpoint
and ends with the same losses and weights as a run that was never interrupted (same seed)."""

from __future__ import annotations

import dataclasses
import random
import signal
from pathlib import Path

import pytest
import torch
from faults_support import (
    adapter_weights,
    losses_by_step,
    read_events,
    start_training,
    tiny_spec,
    wait_for_step,
)

from openft.training.checkpointing import read_progress
from openft.training.protocol import latest_state_dir

pytestmark = [pytest.mark.faults, pytest.mark.slow]
TOTAL_STEPS = 36  # 3 epochs of 12 examples, batch size 1


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    spec = tiny_spec(root, "whole", models_dir)
    process = start_training(spec, root / "whole.json")
    assert process.wait(timeout=300) == 0, (root / "whole.log").read_text()[-3000:]
    return Path(spec.output_dir)


def _assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    assert losses_by_step(resumed) == losses_by_step(uninterrupted)
    assert len(losses_by_step(resumed)) == TOTAL_STEPS
    ours, theirs = adapter_weights(resumed / "adapter"), adapter_weights(uninterrupted / "adapter")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-6, atol=1e-7)
    assert (resumed / "results.csv").read_text() == (uninterrupted / "results.csv").read_text()


def test_sigkill_at_a_random_step_then_resume_matches(tmp_path: Path, models_dir: Path, uninterrupted: Path) -> None:
    spec = tiny_spec(tmp_path, "killed", models_dir)
    output_dir = Path(spec.output_dir)
    kill_at = random.Random().randint(3, TOTAL_STEPS - 3)
    process = start_training(spec, tmp_path / "attempt1.json")
    wait_for_step(process, output_dir, kill_at)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    state = latest_state_dir(output_dir)
    assert state is not None, "no full state was saved before the kill"
    saved_step = read_progress(state).step
    assert 0 < saved_step <= TOTAL_STEPS
    resumed = dataclasses.replace(spec, resume_from=str(state))
    process = start_training(resumed, tmp_path / "attempt2.json")
    assert process.wait(timeout=300) == 0, (tmp_path / "attempt2.log").read_text()[-3000:]

    messages = [e["message"] for e in read_events(output_dir) if e["kind"] == "message"]
    assert any(m.startswith(f"Resumed from step {saved_step}/") for m in messages)
    _assert_same_run(output_dir, uninterrupted)


def test_sigterm_saves_a_checkpoint_and_stops_then_resume_matches(
    tmp_path: Path, models_dir: Path, uninterrupted: Path
) -> None:
    # No step interval: the only mid-epoch state is the one the stop request writes.
    spec = tiny_spec(tmp_path, "stopped", models_dir, save_state_every_steps=None, save_state_every_seconds=None)
    output_dir = Path(spec.output_dir)
    process = start_training(spec, tmp_path / "attempt1.json")
    wait_for_step(process, output_dir, 5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0

    events = read_events(output_dir)
    stopped = [e for e in events if e["kind"] == "stopped"]
    assert len(stopped) == 1 and not any(e["kind"] == "result" for e in events)
    step = stopped[0]["step"]
    assert 5 <= step < TOTAL_STEPS
    # The stop leaves a servable checkpoint at that step, and the full state to continue from.
    assert [e["step"] for e in events if e["kind"] == "checkpoint"][-1] == step
    assert (output_dir / f"checkpoints/step-{step}/adapter_model.safetensors").exists()
    state = latest_state_dir(output_dir)
    assert state is not None and read_progress(state).step == step

    process = start_training(dataclasses.replace(spec, resume_from=str(state)), tmp_path / "attempt2.json")
    assert process.wait(timeout=300) == 0, (tmp_path / "attempt2.log").read_text()[-3000:]
    _assert_same_run(output_dir, uninterrupted)


def test_a_torn_event_line_is_cut_before_the_resumed_run_appends(tmp_path: Path) -> None:
    from openft.training.events import EventWriter
    from openft.training.protocol import EVENTS_FILE, EventReader

    (tmp_path / EVENTS_FILE).write_text('{"kind": "message", "message": "whole"}\n{"kind": "metr')
    writer = EventWriter(tmp_path)
    writer.message("after the restart")
    writer.close()
    lines = EventReader(tmp_path / EVENTS_FILE).read_new()
    assert [line["message"] for line in lines] == ["whole", "after the restart"]
