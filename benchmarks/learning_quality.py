"""Learning quality: what a fine-tuning job teaches on six small held-out tasks, base vs fine-tuned.

Run from the repository root::

    .venv/bin/python -m benchmarks.learning_quality [--model HuggingFaceTB/SmolLM2-135M-Instruct]
        [--variants auto,bs8] [--hyperparameters '{"batch_size": 8}'] [--tasks classify,...]
        [--train-examples 100] [--test-examples 40] [--seed 0] [--models-dir DIR] [--smoke]

The tasks (``benchmarks/quality_tasks.py``): a classification label, extraction to a JSON object, a
style rewrite to a fixed template, a multi-turn chat whose answer was given two turns earlier, a
tool call with arguments, and a bare-number answer the base model wraps in a sentence. Training and
test sets are generated from ``--seed`` with disjoint names, cities, objects and templates.

Everything goes through openft's HTTP API with the official ``openai`` client, as a user's script
would: ``openft serve`` (its own home, SQLite, embedded worker) on a free loopback port; each task's
training file is uploaded and one supervised job per task and variant runs to completion (seed 0);
then the base model and every fine-tuned model answer the task's test items greedily
(temperature 0, small ``max_completion_tokens``) in an Evals API run with a ``python`` criterion
(exact or structured match; an empty answer fails). The tool-call task is answered through chat
completions instead, with the same grader run here: an eval run's prompts carry no ``tools``.

A variant is a set of explicit hyperparameters passed on the job (``auto`` passes none, so the
server's ``"auto"`` rules decide); the resolved values are read back from the job. Prints a table
per variant and appends one JSON line to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.api_latency import free_port
from benchmarks.common import ROOT, append_result, cpu_model_name
from benchmarks.quality_tasks import GENERATORS, GRADER_SOURCE, Task, build_tasks, grade

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Named alternatives to the "auto" rules, as explicit job hyperparameters. The learning-rate
# multiplier of the batch-size variants scales the per-model LoRA rate with sqrt(batch size).
VARIANTS: dict[str, dict[str, Any]] = {
    "auto": {},
    "bs4": {"batch_size": 4},
    "bs4_sqrt": {"batch_size": 4, "learning_rate_multiplier": 2.0},
    "bs8_sqrt": {"batch_size": 8, "learning_rate_multiplier": 2.83},
    "bs8_sqrt_e5": {"batch_size": 8, "learning_rate_multiplier": 2.83, "n_epochs": 5},
    "e2": {"n_epochs": 2},
    "lr2": {"learning_rate_multiplier": 2.0},
}


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    """``openft serve`` (embedded worker) on loopback; its log goes to a file, so a long run never blocks on a pipe."""
    import httpx

    env = {**os.environ, "OPENFT_HOME": str(home)}
    env.pop("OPENFT_DATABASE_URL", None)
    log = (home / "server.log").open("wb")
    openft = Path(sys.executable).parent / "openft"
    process = subprocess.Popen(
        [str(openft), "serve", "--worker", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    deadline = time.time() + 300
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError((home / "server.log").read_text()[-3000:])
        time.sleep(0.3)


def train(
    client: Any, model: str, task: Task, hyperparameters: dict[str, Any], work: Path, deadline: float
) -> dict[str, Any] | None:
    """Upload the task's training file, run one job to the end; its model, resolved values, tokens, seconds.

    A job still running at ``deadline`` (``time.monotonic()``) is cancelled: None.
    """
    path = work / f"{task.name}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in task.train))
    with path.open("rb") as fh:
        file = client.files.create(file=fh, purpose="fine-tune")
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=file.id,
        method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        seed=0,
        suffix=task.name.replace("_", "-"),
    )
    while job.status not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            client.fine_tuning.jobs.cancel(job.id)
            print(f"  {task.name:<14} cancelled at the time limit", flush=True)
            return None
        time.sleep(1.0)
        job = client.fine_tuning.jobs.retrieve(job.id)
    seconds = time.perf_counter() - started
    if job.status != "succeeded":
        raise RuntimeError(f"{task.name}: job {job.id} {job.status}: {job.error}")
    resolved = job.method.supervised.hyperparameters if job.method and job.method.supervised else job.hyperparameters
    return {
        "model": job.fine_tuned_model,
        "hyperparameters": resolved.model_dump(exclude_none=True),
        "trained_tokens": job.trained_tokens,
        "seconds": round(seconds, 1),
    }


def score_with_eval(client: Any, model: str, task: Task) -> float:
    """The share of the task's test items that ``model`` answers right, through an Evals API run."""
    ev = client.evals.create(
        name=f"learning-quality {task.name}",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=[{"type": "python", "name": "match", "source": GRADER_SOURCE, "pass_threshold": 1.0}],
    )
    run = client.evals.runs.create(
        ev.id,
        data_source={
            "type": "completions",
            "model": model,
            "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
            "sampling_params": {"temperature": 0, "max_completion_tokens": task.max_tokens},
            "source": {"type": "file_content", "content": [{"item": item} for item in task.test]},
        },
    )
    while run.status in ("queued", "in_progress"):
        time.sleep(0.5)
        run = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    if run.status != "completed":
        raise RuntimeError(f"{task.name}: eval run {run.id} {run.status}: {run.error}")
    counts = run.result_counts
    return counts.passed / max(counts.total, 1)


def score_with_chat(client: Any, model: str, task: Task) -> float:
    """The same share through chat completions (tasks whose prompts need ``tools``)."""
    passed = 0.0
    for item in task.test:
        answer = (
            client.chat.completions.create(
                model=model,
                messages=item["messages"],
                tools=item.get("tools"),
                temperature=0,
                max_tokens=task.max_tokens,
            )
            .choices[0]
            .message
        )
        calls = [call.model_dump() for call in answer.tool_calls or []]
        passed += grade(answer.content or "", calls, item)
    return passed / len(task.test)


def score(client: Any, model: str, task: Task) -> float:
    return score_with_chat(client, model, task) if task.uses_tools else score_with_eval(client, model, task)


def run_variant(
    client: Any, model: str, tasks: list[Task], hyperparameters: dict[str, Any], work: Path, deadline: float
) -> dict[str, dict[str, Any]]:
    """Each task's job and score; a task whose job did not finish before ``deadline`` is left out."""
    out = {}
    for task in tasks:
        job = train(client, model, task, hyperparameters, work, deadline) if time.monotonic() < deadline else None
        if job is None:
            continue
        started = time.perf_counter()
        job["score"] = round(score(client, job["model"], task), 4)
        job["score_seconds"] = round(time.perf_counter() - started, 1)
        print(f"  {task.name:<14} {job['score']:>6.2f}  {job['hyperparameters']}  {job['seconds']:.0f} s", flush=True)
        out[task.name] = job
    return out


def print_table(tasks: list[Task], base: dict[str, float], variants: dict[str, dict[str, dict[str, Any]]]) -> None:
    names = list(variants)
    print(f"\n{'task':<14}{'base':>8}" + "".join(f"{n:>14}" for n in names))

    def cell(scores: dict[str, Any], name: str, width: int) -> str:
        value = scores.get(name)
        return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"

    for task in tasks:
        row = "".join(cell({k: r["score"] for k, r in variants[n].items()}, task.name, 14) for n in names)
        print(f"{task.name:<14}{cell(base, task.name, 8)}{row}")
    print("(a dash: not measured within --time-limit; means are over the tasks measured)")
    means = "".join(f"{mean_score(v):>14.3f}" for v in variants.values())
    print(f"{'mean':<14}{statistics.mean(base.values()) if base else float('nan'):>8.3f}{means}")


def mean_score(results: dict[str, dict[str, Any]]) -> float:
    return statistics.mean(r["score"] for r in results.values()) if results else float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--tasks", default="", help=f"comma-separated subset of: {', '.join(GENERATORS)}")
    parser.add_argument("--variants", default="auto", help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    parser.add_argument("--hyperparameters", default=None, help="one more variant, 'custom': a JSON object")
    parser.add_argument("--train-examples", type=int, default=100)
    parser.add_argument("--test-examples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-base", action="store_true", help="do not score the base model")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds: jobs still running then are cancelled, tasks left out"
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="a model cache to reuse (symlinked)")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    parser.add_argument("--smoke", action="store_true", help="tiny-chat, two tasks, a few examples: checks it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.train_examples, args.test_examples = "openft/tiny-chat", 12, 4
        args.tasks = args.tasks or "classify,tool_call"
        args.hyperparameters = args.hyperparameters or '{"n_epochs": 1}'
        args.variants = ""
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = {n: VARIANTS[n] for n in args.variants.split(",") if n}
    if args.hyperparameters:
        variants["custom"] = json.loads(args.hyperparameters)
    tasks = build_tasks(args.seed, args.train_examples, args.test_examples, [t for t in args.tasks.split(",") if t])
    home = Path(tempfile.mkdtemp(prefix="openft-quality-bench-"))
    if args.models_dir is not None:
        (home / "models").symlink_to(args.models_dir.resolve())
    from openai import OpenAI

    port = free_port()
    process = start_server(home, port)
    started = time.perf_counter()
    deadline = time.monotonic() + (args.time_limit if args.time_limit is not None else float("inf"))
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0, timeout=900)
        base: dict[str, float] = {}
        if not args.skip_base:
            for task in tasks:
                if time.monotonic() > deadline:
                    break
                base[task.name] = round(score(client, args.model, task), 4)
                print(f"base {task.name:<14} {base[task.name]:.2f}", flush=True)
        results = {}
        for name, hyperparameters in variants.items():
            print(f"variant {name}: {hyperparameters or 'all auto'}", flush=True)
            results[name] = run_variant(client, args.model, tasks, hyperparameters, home, deadline)
    finally:
        process.terminate()
        process.wait(timeout=60)
    seconds = time.perf_counter() - started
    print(f"model {args.model}, seed {args.seed}, CPU {cpu_model_name()}, load {os.getloadavg()[0]:.1f}")
    print_table(tasks, base, results)
    append_result(
        {
            "benchmark": "learning_quality",
            "model": args.model,
            "seed": args.seed,
            "train_examples": args.train_examples,
            "test_examples": args.test_examples,
            "base": base,
            "variants": {
                name: {
                    "requested": variants[name],
                    "mean": round(mean_score(v), 4),
                    "tasks": v,
                }
                for name, v in results.items()
            },
            "seconds": round(seconds, 1),
            "time_limit": args.time_limit,
        },
        args.results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
