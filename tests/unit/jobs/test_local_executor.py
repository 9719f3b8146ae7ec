"""The local executor: a real child process, its exit code, its log, and a kill of its process group."""

from __future__ import annotations

import os
import time
from pathlib import Path

from openft.jobs.executors.local import LocalExecutor
from openft.store.rows import JobRow


def _job() -> JobRow:
    return JobRow(
        id="ftjob-local0001",
        organization_id="org-personal",
        model="openft/tiny-chat",
        training_file="file-x",
        validation_file=None,
        status="running",
        method={"type": "supervised"},
        hyperparameters={},
        seed=1,
        model_name="ft:openft/tiny-chat:personal::local0001",
        created_at=0,
    )


def _wait_exit(handle: object, timeout: float = 60) -> int:
    deadline = time.time() + timeout
    while (code := handle.poll()) is None:  # type: ignore[attr-defined]
        assert time.time() < deadline, "the process did not exit"
        time.sleep(0.05)
    return code


def test_an_unreadable_spec_exits_2_and_says_why_in_the_log(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text("not json")
    handle = LocalExecutor().launch(_job(), spec, tmp_path)
    assert _wait_exit(handle) == 2
    assert "cannot read training spec" in handle.log_tail()
    assert handle.read_events() == []
    handle.close()


def test_kill_stops_the_process_group(tmp_path: Path) -> None:
    # A spec path that blocks: reading a FIFO with no writer waits forever.
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    handle = LocalExecutor().launch(_job(), fifo, tmp_path)
    time.sleep(0.5)
    assert handle.poll() is None
    handle.kill()
    assert _wait_exit(handle) == -9
    handle.kill()  # idempotent once the process is gone
    handle.close()


def test_a_standby_process_takes_the_next_job_in_its_directory(tmp_path: Path) -> None:
    executor = LocalExecutor()
    executor.prepare()
    standby = executor._standby
    assert standby is not None and standby.poll() is None
    executor.prepare()  # ready already: no second process
    assert executor._standby is standby
    job_dir = tmp_path / "jobs" / "ftjob-local0001"
    job_dir.mkdir(parents=True)
    spec = job_dir / "spec.json"
    spec.write_text("not json")
    handle = executor.launch(_job(), spec, job_dir)
    assert handle.process.pid == standby.pid and executor._standby is None
    assert _wait_exit(handle) == 2
    assert "cannot read training spec" in handle.log_tail()  # its output went to the job's train.log
    handle.close()


def test_shutdown_ends_an_unused_standby_and_a_dead_one_is_replaced_by_a_fresh_process(tmp_path: Path) -> None:
    executor = LocalExecutor()
    executor.prepare()
    standby = executor._standby
    assert standby is not None
    executor.shutdown()
    assert standby.poll() is not None and executor._standby is None
    executor.prepare()
    dead = executor._standby
    assert dead is not None
    dead.kill()
    dead.wait()
    spec = tmp_path / "spec.json"
    spec.write_text("not json")
    handle = executor.launch(_job(), spec, tmp_path)
    assert handle.process.pid != dead.pid
    assert _wait_exit(handle) == 2
    handle.close()


def test_without_standby_prepare_starts_nothing() -> None:
    executor = LocalExecutor(standby=False)
    executor.prepare()
    assert executor._standby is None
