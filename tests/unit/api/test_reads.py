"""api/reads.py: database reads run on a few threads."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from openft.api.reads import ReadThreads


def test_at_most_size_reads_run_at_once() -> None:
    reads = ReadThreads(2)
    running, most, started = 0, 0, []
    lock = threading.Lock()

    def read(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            started.append(i)
        time.sleep(0.1)  # long enough for the second thread to start while the first reads
        with lock:
            running -= 1
        return i * 10

    async def main() -> list[int]:
        results: list[int] = [0] * 6
        async with anyio.create_task_group() as group:
            for i in range(6):

                async def one(i: int = i) -> None:
                    results[i] = await reads.run(read, i)

                group.start_soon(one)
        return results

    assert anyio.run(main) == [0, 10, 20, 30, 40, 50]
    assert most == 2
    assert sorted(started) == list(range(6))


def test_a_failing_read_raises_in_the_caller() -> None:
    def fail() -> None:
        raise LookupError("no such job")

    with pytest.raises(LookupError, match="no such job"):
        anyio.run(ReadThreads(1).run, fail)
