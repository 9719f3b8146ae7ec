"""Job start-up: ``POST /v1/fine_tuning/jobs`` to the first training step, cold and warm.

Run from the repository root::

    .venv/bin/python -m benchmarks.job_startup [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--examples 16]

Starts ``openft serve`` (API and embedded worker) on a fresh ``$OPENFT_HOME``, uploads the bundled
``pirate.jsonl`` (its first ``--examples`` lines) with the official ``openai`` client, and times two
jobs on the same home, one after the other:

* **cold**: the model cache is empty, so the GGUF is de-quantized and converted to safetensors,
  and the file is tokenized;
* **warm**: the same request again, after the server has been idle for ``--idle-seconds`` (10), as
  a server is between real jobs: safetensors loaded memory-mapped, tokens from the cache, and the
  worker's standby training process (torch, transformers and PEFT already imported) ready.

Each time runs from just before ``jobs.create`` until the first ``metrics`` event (the first
optimizer step) is listed, polling the events every 50 ms; the job is then cancelled. The
baseline, measured in the same run in a fresh process, is what a plain transformers user waits
for: ``import transformers`` plus ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` of
the same GGUF. Prints both and warm / baseline, and appends one JSON line to
``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.api_latency import free_port, start_server
from benchmarks.common import ROOT, append_result, run_measured

EXAMPLES = ROOT / "src" / "openft" / "examples" / "pirate.jsonl"

_GGUF_BASELINE = """
import json, sys, time
started = time.perf_counter()
from pathlib import Path
from transformers import AutoModelForCausalLM
gguf = Path(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def training_processes(job_id: str) -> list[int]:
    """Pids of the training processes of ``job_id`` (Linux ``/proc``; empty elsewhere).

    A process started for the job names it on its command line; a standby process that took the
    job works in the job's directory.
    """
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if b"openft.training" in argv and (any(job_id.encode() in arg for arg in argv) or cwd.name == job_id):
            pids.append(int(proc.name))
    return pids


def time_to_first_step(client: Any, model: str, file_id: str, timeout: float = 900) -> dict[str, Any]:
    """Create a job, wait for its first metrics event, cancel it; returns the timings."""
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=file_id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
        seed=0,
    )
    seen: dict[str, float] = {}
    while time.perf_counter() - started < timeout:
        events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
        now = time.perf_counter() - started
        for e in reversed(events):
            seen.setdefault(e.message, now)
        if any(e.type == "metrics" for e in events):
            break
        if client.fine_tuning.jobs.retrieve(job.id).status in ("failed", "cancelled", "succeeded"):
            raise RuntimeError(f"job ended before its first step: {[e.message for e in events][:5]}")
        time.sleep(0.05)
    else:
        raise RuntimeError(f"no training step within {timeout} s")
    seconds = min(t for m, t in seen.items() if m.startswith("Step "))
    client.fine_tuning.jobs.cancel(job.id)
    while client.fine_tuning.jobs.retrieve(job.id).status != "cancelled":
        time.sleep(0.1)
    # The next measurement starts once this job's process is gone (the worker kills it within its grace
    # period), so it times a start-up, not the end of a cancel.
    deadline = time.perf_counter() + 60
    while training_processes(job.id) and time.perf_counter() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # and the worker noticed
    return {"seconds": seconds, "events": {m: round(t, 2) for m, t in sorted(seen.items(), key=lambda kv: kv[1])}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle time before the warm job")
    parser.add_argument("--skip-baseline", action="store_true", help="do not time the plain transformers load")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    args = parser.parse_args(argv)

    from openai import OpenAI

    from openft.models.catalog import find_base_model

    base = find_base_model(args.model)
    if base is None:
        raise SystemExit(f"unknown or unavailable base model: {args.model}")
    record: dict[str, Any] = {"benchmark": "job_startup", "model": args.model, "examples": args.examples}
    # OPENFT_STANDBY_TRAINING_PROCESS=false in the environment measures starts without the standby process.
    record["standby_training_process"] = os.environ.get("OPENFT_STANDBY_TRAINING_PROCESS", "true")
    record["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="openft-startup-bench-") as tmp:
        home = Path(tmp)
        data = home / "train.jsonl"
        data.write_text("".join(EXAMPLES.read_text().splitlines(keepends=True)[: args.examples]))
        port = free_port()
        server = start_server(home, port, worker=True)
        try:
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0)
            with data.open("rb") as fh:
                file_id = client.files.create(file=fh, purpose="fine-tune").id
            record["cold"] = time_to_first_step(client, args.model, file_id)
            time.sleep(args.idle_seconds)
            record["warm"] = time_to_first_step(client, args.model, file_id)
        finally:
            server.terminate()
            server.wait(timeout=60)
    record["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if base.source == "gguf" and not args.skip_baseline:
        record["baseline_gguf_load"] = run_measured(_GGUF_BASELINE, str(base.path), env={"HF_HUB_OFFLINE": "1"})
        record["ratio_warm_over_gguf_load"] = record["warm"]["seconds"] / record["baseline_gguf_load"]["seconds"]
        record["ratio_cold_over_gguf_load"] = record["cold"]["seconds"] / record["baseline_gguf_load"]["seconds"]

    print(f"\njob_startup: {args.model}, {args.examples} examples, create -> first training step")
    print(f"load average (1, 5, 15 min) before: {record['load_average_before']}, after: {record['load_average_after']}")
    for name in ("cold", "warm"):
        print(f"{name:<6} {record[name]['seconds']:>7.1f} s")
        for message, at in record[name]["events"].items():
            print(f"         {at:>7.2f} s  {message[:100]}")
    if "baseline_gguf_load" in record:
        print(
            f"baseline: transformers from_pretrained(gguf_file=...) in a fresh process: "
            f"{record['baseline_gguf_load']['seconds']:.1f} s"
        )
        print(
            f"warm start / GGUF load: {record['ratio_warm_over_gguf_load']:.2f}x "
            f"(cold: {record['ratio_cold_over_gguf_load']:.2f}x)"
        )
    append_result(record, args.results)
    return record


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
