"""Run the benchmark suite: every benchmark against its baseline, measured in the same run.

Run from the repository root::

    .venv/bin/python -m benchmarks [--smoke] [--only NAME[,NAME...]] [--results PATH]

Each benchmark runs in a process of its own (so one's memory and threads never colour the next),
prints its table and ratio, and appends a JSON line to ``benchmarks/results.jsonl`` (or
``--results``). ``--smoke`` runs every benchmark at a tiny size, to check that the suite works,
not to measure anything. Run the full suite on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY = "openft/tiny-chat"

# name -> (full-size arguments, smoke arguments)
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "train_throughput_tiny": (
        ["train_throughput", "--model", TINY, "--examples", "256"],
        ["train_throughput", "--model", TINY, "--examples", "16", "--peak-seconds", "0.2"],
    ),
    "train_throughput_smollm2": (
        ["train_throughput", "--model", SMOLLM2, "--examples", "128"],
        ["train_throughput", "--model", SMOLLM2, "--examples", "8", "--skip-trl", "--skip-peak"],
    ),
    "job_startup": (["job_startup"], ["job_startup", "--examples", "12", "--skip-baseline", "--idle-seconds", "0"]),
    "validate_throughput": (["validate_throughput", "--mb", "200"], ["validate_throughput", "--mb", "2"]),
    "estimate_accuracy": (
        ["estimate_accuracy"],
        ["estimate_accuracy", "--model", TINY, "--examples", "12", "--epochs", "1", "--batch-size", "2"],
    ),
    "api_latency": (["api_latency"], ["api_latency", "--jobs", "500", "--events", "10000", "--requests", "50"]),
    "learning_quality": (
        ["learning_quality", "--variants", "auto"],
        ["learning_quality", "--smoke"],
    ),
    "serving": (
        ["serving", "--step-reps", "5"],
        ["serving", "--model", TINY, "--requests", "1", "--max-tokens", "4", "--clients", "2", "--rounds", "1"],
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suite runs, measures nothing")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SUITE)}")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    parser.add_argument("--models-dir", type=Path, default=None, help="model cache (default ~/.openft/models)")
    args = parser.parse_args(argv)

    names = [n for n in args.only.split(",") if n] or list(SUITE)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    for name in names:
        module, *rest = SUITE[name][1 if args.smoke else 0]
        extra = ["--results", str(args.results)] if args.results else []
        if args.models_dir and module in ("train_throughput", "validate_throughput", "serving", "learning_quality"):
            extra += ["--models-dir", str(args.models_dir)]
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *rest, *extra], cwd=ROOT).returncode
        print(f"=== {name}: {'ok' if code == 0 else f'FAILED ({code})'} in {time.perf_counter() - started:.0f} s")
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
