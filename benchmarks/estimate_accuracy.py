"""Estimate accuracy: a job's estimated running time and trained tokens against the real ones.

Run from the repository root::

    .venv/bin/python -m benchmarks.estimate_accuracy [--model HuggingFaceTB/SmolLM2-135M-Instruct]
        [--examples 32] [--epochs 2] [--batch-size 4]

Starts ``openft serve`` (API and embedded worker) on a fresh ``$OPENFT_HOME`` whose model cache is
``--models-dir`` (so a converted model is not converted again), uploads the bundled pirate examples
and, with the official ``openai`` client, runs two jobs one after the other, each preceded by its
``POST /v1/fine_tuning/jobs/estimate``:

* **first**: nothing measured yet, so the estimate comes from a calibration run (a few steps on the
  job's first examples);
* **second**: twice the examples, estimated from the first job's measured throughput.

The baseline is each job's real running time, measured in the same run: from the ``Fine-tuning job
started`` event to ``The job has successfully completed`` (whole seconds, as events are stamped).
Prints estimated / real for time and trained tokens (goal: time within 30 %, tokens exact) and appends
one JSON line to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.api_latency import free_port, start_server
from benchmarks.common import ROOT, append_result

EXAMPLES = ROOT / "src" / "openft" / "examples" / "pirate.jsonl"
VALIDATION = ROOT / "src" / "openft" / "examples" / "pirate_validation.jsonl"


def _run_job(client: Any, model: str, file_id: str, valid_id: str, method: dict[str, Any]) -> dict[str, Any]:
    """Estimate, then run the same job to its end; the estimate beside what really happened."""
    body = {"model": model, "training_file": file_id, "validation_file": valid_id, "method": method}
    asked = time.perf_counter()
    est = client.post("/fine_tuning/jobs/estimate", body=body, cast_to=object)
    estimate_seconds = time.perf_counter() - asked
    job = client.fine_tuning.jobs.create(**body, seed=1)
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded":
        raise RuntimeError(f"job {job.id} {job.status}: {job.error}")
    events = {e.message: e for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)}
    started = events["Fine-tuning job started"].created_at
    real = events["The job has successfully completed"].created_at - started
    return {
        "job_id": job.id,
        "estimate_request_seconds": round(estimate_seconds, 2),
        "estimated_seconds": est["estimated_seconds"],
        "estimated_seconds_source": est["estimated_seconds_source"],
        "tokens_per_second": est["tokens_per_second"],
        "real_seconds": real,
        "time_ratio": est["estimated_seconds"] / real if est["estimated_seconds"] and real else None,
        "estimated_trained_tokens": est["trained_tokens"],
        "trained_tokens": job.trained_tokens,
        "peak_memory_bytes": est["peak_memory_bytes"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--examples", type=int, default=32, help="examples of the first job (the second: twice)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    args = parser.parse_args(argv)

    from openai import OpenAI

    lines = EXAMPLES.read_text().splitlines(keepends=True)
    method = {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": args.epochs, "batch_size": args.batch_size}},
    }
    record: dict[str, Any] = {"benchmark": "estimate_accuracy", "model": args.model, "method": method}
    record["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="openft-estimate-bench-") as tmp:
        home = Path(tmp)
        args.models_dir.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(args.models_dir.resolve())
        port = free_port()
        server = start_server(home, port, worker=True)
        try:
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0, timeout=900)
            valid_id = client.files.create(file=VALIDATION.open("rb"), purpose="fine-tune").id
            for name, n in (("first", args.examples), ("second", 2 * args.examples)):
                data = home / f"{name}.jsonl"
                data.write_text("".join(lines[i % len(lines)] for i in range(n)))
                file_id = client.files.create(file=data.open("rb"), purpose="fine-tune").id
                record[name] = {"examples": n, **_run_job(client, args.model, file_id, valid_id, method)}
        finally:
            server.terminate()
            server.wait(timeout=60)
    record["load_average_after"] = [round(x, 2) for x in os.getloadavg()]

    print(f"\nestimate_accuracy: {args.model}, {args.epochs} epochs, batch size {args.batch_size}")
    print(f"load average (1, 5, 15 min) before: {record['load_average_before']}, after: {record['load_average_after']}")
    for name in ("first", "second"):
        r = record[name]
        ratio = f"{r['time_ratio']:.2f}" if r["time_ratio"] is not None else "-"
        print(
            f"{name:<7} {r['examples']:>4} examples: estimated {r['estimated_seconds']} s "
            f"({r['estimated_seconds_source']}, {r['tokens_per_second']} tok/s), real {r['real_seconds']} s, "
            f"ratio {ratio}; trained tokens estimated {r['estimated_trained_tokens']:,}, "
            f"real {r['trained_tokens']:,}"
        )
    append_result(record, args.results)
    return record


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
