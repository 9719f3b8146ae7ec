"""An eval run against the same requests sent one by one, and chat latency while a run goes on.

Run from the repository root::

    .venv/bin/python benchmarks/eval_run.py [--items 500] [--model HuggingFaceTB/SmolLM2-135M-Instruct]
        [--max-tokens 32] [--probes 8] [--baseline-items N] [--models-dir DIR]

One live ``openft serve`` (its own home, SQLite) on a loopback port, driven by the official client:

1. Baseline: the ``--items`` chat requests (or the first ``--baseline-items`` of them) sent one after
   another to ``/v1/chat/completions``
   (greedy, ``--max-tokens``), after one warm-up request: items/s.
2. The eval run: the same requests as a ``completions`` run (``file_content`` source, one
   ``string_check`` criterion), from ``runs.create`` until the run is completed: items/s. The run's
   items go to the same serving engine, ``eval_run_concurrency`` at a time, so they are batched.
3. Latency for another client: ``--probes`` chat requests one after another on an idle server, then
   as many while the run goes on; the ratio of their medians is what a run costs live traffic.

Prints a table and appends a JSON line to ``benchmarks/results.jsonl`` (the machine and its CPU
from ``lscpu`` first).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_result, cpu_model_name

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
TOPICS = ["a lighthouse", "a market", "the sea", "a bicycle", "a garden", "a train", "a library", "rain"]


def prompts(n: int) -> list[str]:
    return [f"Write one sentence about {TOPICS[i % len(TOPICS)]} (number {i})." for i in range(n)]


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OPENFT_HOME": str(home)}
    env.pop("OPENFT_DATABASE_URL", None)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "openft", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, f"{url}/v1"
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError((home / "server.log").read_text()[-3000:])
        time.sleep(0.2)


def chat_latency(
    client: OpenAI, model: str, max_tokens: int, count: int, stop: threading.Event | None = None
) -> list[float]:
    """Seconds per request of ``count`` chat requests one after another (fewer if ``stop`` is set first)."""
    times = []
    for i in range(count):
        if stop is not None and stop.is_set():
            break
        started = time.perf_counter()
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"Say something about {TOPICS[i % len(TOPICS)]}."}],
            max_tokens=max_tokens,
            temperature=0,
        )
        times.append(time.perf_counter() - started)
    return times


def one_by_one(client: OpenAI, model: str, questions: list[str], max_tokens: int) -> float:
    started = time.perf_counter()
    for question in questions:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0
        )
    return time.perf_counter() - started


def eval_run(client: OpenAI, model: str, questions: list[str], max_tokens: int) -> tuple[float, Any]:
    ev = client.evals.create(
        name="benchmark",
        data_source_config={
            "type": "custom",
            "item_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
        testing_criteria=[
            {
                "type": "string_check",
                "name": "answered",
                "input": "{{sample.output_text}}",
                "reference": "",
                "operation": "ne",
            }
        ],
    )
    started = time.perf_counter()
    run = client.evals.runs.create(
        ev.id,
        data_source={
            "type": "completions",
            "model": model,
            "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.q}}"}]},
            "sampling_params": {"temperature": 0, "max_completion_tokens": max_tokens},
            "source": {"type": "file_content", "content": [{"item": {"q": q}} for q in questions]},
        },
    )
    while run.status in ("queued", "in_progress"):
        time.sleep(0.2)
        run = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    return time.perf_counter() - started, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument(
        "--baseline-items", type=int, default=None, help="send only the first N one by one (default: all); a rate"
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="a model cache to reuse (symlinked)")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="openft-eval-bench-"))
    if args.models_dir is not None:
        (home / "models").symlink_to(args.models_dir.resolve())
    process, base_url = start_server(home)
    try:
        client = OpenAI(base_url=base_url, api_key="local", max_retries=0, timeout=600)
        questions = prompts(args.items)
        chat_latency(client, args.model, args.max_tokens, 1)  # loads the model
        idle = chat_latency(client, args.model, args.max_tokens, args.probes)
        baseline = questions[: args.baseline_items or len(questions)]
        sequential = one_by_one(client, args.model, baseline, args.max_tokens)

        stop = threading.Event()
        during: list[float] = []
        prober = threading.Thread(
            target=lambda: during.extend(chat_latency(client, args.model, args.max_tokens, args.probes, stop))
        )
        result: dict[str, Any] = {}

        def run_eval() -> None:
            result["seconds"], result["run"] = eval_run(client, args.model, questions, args.max_tokens)
            stop.set()

        runner = threading.Thread(target=run_eval)
        runner.start()
        time.sleep(1.0)  # the run is claimed and its first batch is decoding
        prober.start()
        runner.join()
        prober.join()
    finally:
        process.terminate()
        process.wait(timeout=60)

    run = result["run"]
    assert run.status == "completed", run.error
    assert run.result_counts.total == args.items
    run_rate, seq_rate = args.items / result["seconds"], len(baseline) / sequential
    idle_ms, busy_ms = statistics.median(idle) * 1000, statistics.median(during or idle) * 1000
    print(f"model {args.model}, {args.items} items, max_tokens {args.max_tokens}, CPU {cpu_model_name()}")
    print(f"{'measure':<44}{'openft':>12}{'baseline':>12}{'ratio':>9}")
    print(f"{'items/s: eval run vs one-by-one chat':<44}{run_rate:>12.2f}{seq_rate:>12.2f}{run_rate / seq_rate:>8.2f}x")
    print(f"{'chat p50 ms: during the run vs idle':<44}{busy_ms:>12.0f}{idle_ms:>12.0f}{busy_ms / idle_ms:>8.2f}x")
    print(f"(latency probes during the run: {len(during)})")
    append_result(
        {
            "benchmark": "eval_run",
            "model": args.model,
            "items": args.items,
            "baseline_items": len(baseline),
            "max_tokens": args.max_tokens,
            "eval_items_per_s": round(run_rate, 3),
            "one_by_one_items_per_s": round(seq_rate, 3),
            "speedup": round(run_rate / seq_rate, 3),
            "chat_p50_ms_idle": round(idle_ms, 1),
            "chat_p50_ms_during_run": round(busy_ms, 1),
            "latency_probes_during_run": len(during),
            "result_counts": run.result_counts.model_dump(),
        },
        args.results,
    )


if __name__ == "__main__":
    main()
