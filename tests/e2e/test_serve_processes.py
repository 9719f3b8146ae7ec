"""``openft serve --workers 2``: two API processes on one port and the job worker in the supervising
process. A job runs and its model chats; an API process that crashes is replaced while the other
keeps answering; a second server on the same port is refused; SIGTERM stops every process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import start_live_server, stop_live_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"


def _api_processes(parent: int) -> set[int]:
    """The API processes of ``openft serve`` (multiprocessing's spawned children, not its resource tracker)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def _wait_for(condition, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_api_processes_train_serve_survive_a_crash_and_stop(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "models").symlink_to(models_dir)
    server = start_live_server(tmp_path, "--workers", "2")
    seen: set[int] = set()
    try:
        parent = server.process.pid

        def two_api_processes_without(gone: int | None) -> set[int] | None:
            found = _api_processes(parent)
            return found if len(found) == 2 and gone not in found else None

        first = _wait_for(lambda: two_api_processes_without(None), what="2 API processes")
        client = server.client()

        training_file = client.files.create(
            file=("tiny_train.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune"
        ).id
        job = client.fine_tuning.jobs.create(
            model=TINY, training_file=training_file, hyperparameters={"n_epochs": 1}, seed=3
        )

        def finished() -> object | None:
            current = client.fine_tuning.jobs.retrieve(job.id)
            return current if current.status in ("succeeded", "failed", "cancelled") else None

        job = _wait_for(finished, timeout=240, what="the job to finish")
        assert job.status == "succeeded", job.error
        reply = client.chat.completions.create(
            model=job.fine_tuned_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=5
        )
        assert reply.model == job.fine_tuned_model and reply.usage.completion_tokens > 0

        # A second server on the same port fails instead of sharing it through SO_REUSEPORT.
        port = server.base_url.rsplit(":", 1)[1].split("/")[0]
        env = {**os.environ, "OPENFT_HOME": str(tmp_path / "second")}
        second = subprocess.run(
            [sys.executable, "-m", "openft", "serve", "--workers", "2", "--no-worker", "--port", port],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1 and "already in use" in second.stdout + second.stderr

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_for(lambda: two_api_processes_without(victim), what="a replacement API process")
        assert max(first) in replaced  # the survivor kept running
        seen |= first | replaced
        for _ in range(10):  # fresh connections reach either process, and both answer
            assert client.with_options(max_retries=0).fine_tuning.jobs.retrieve(job.id).status == "succeeded"
            client.close()
            client = server.client()
    finally:
        stop_live_server(server)
    assert server.process.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in seen), timeout=30, what="API processes to exit")
