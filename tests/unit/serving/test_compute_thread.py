"""The compute thread (``serving/compute.py``): with several torch threads every engine's torch work runs on
one thread of the process; with one, on the engine's own thread."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from openft.serving import compute

ENGINE_SCRIPT = """
import os, sys, threading
from pathlib import Path
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.fast_decode import FastLlama
from openft.serving.hf import HFBackend

threads = set()
forward = FastLlama.forward
def recorded(self, *args):
    threads.add(threading.current_thread().name)
    return forward(self, *args)
FastLlama.forward = recorded  # a spy: the real forward runs
base = find_base_model(TINY_CHAT)
backend = HFBackend(Path(sys.argv[1]), device="cpu", threads=int(sys.argv[2]))
answer = backend.chat(ServedModel(id=TINY_CHAT, base=base), [{"role": "user", "content": "Hi"}],
                      SamplingParams(max_tokens=4, temperature=0))
print(answer.completion_tokens > 0, sorted(threads), flush=True)
os._exit(0)  # not through interpreter shutdown, which may abort while the daemon engine thread runs
"""


@pytest.mark.parametrize(("torch_threads", "runs_on"), [(2, "openft-compute"), (1, "openft-engine")])
def test_engine_steps_run_on_the_compute_thread_only_with_several_torch_threads(
    models_dir: Path, torch_threads: int, runs_on: str
) -> None:
    # Its own process: torch's thread count is process-wide, and this suite's other tests run at one.
    out = subprocess.run(
        [sys.executable, "-c", ENGINE_SCRIPT, str(models_dir), str(torch_threads)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    answered, names = out.stdout.strip().split(" ", 1)
    assert answered == "True"
    assert all(name.startswith(runs_on) for name in ast.literal_eval(names)), names


def test_work_returns_its_result_and_raises_its_error_on_the_caller_thread() -> None:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = compute.run(threading.current_thread)
        assert seen.name.startswith("openft-compute") and seen is not threading.current_thread()
        assert compute.run(lambda: compute.run(threading.current_thread)) is seen  # nested: no deadlock

        def fail() -> None:
            raise ValueError("step failed")

        with pytest.raises(ValueError, match="step failed"):
            compute.run(fail)
        torch.set_num_threads(1)
        assert compute.run(threading.current_thread) is threading.current_thread()
    finally:
        torch.set_num_threads(previous)


def test_a_load_runs_on_a_thread_that_has_ended_when_it_returns() -> None:
    seen: list[threading.Thread] = []

    def load() -> str:
        seen.append(threading.current_thread())
        return "loaded"

    assert compute.on_a_thread_of_its_own(load, name="openft-load-tiny") == "loaded"
    assert seen[0].name == "openft-load-tiny" and seen[0] is not threading.current_thread()
    assert not seen[0].is_alive()

    def fail() -> str:
        raise OSError("no weights")

    with pytest.raises(OSError, match="no weights"):
        compute.on_a_thread_of_its_own(fail, name="openft-load-tiny")
