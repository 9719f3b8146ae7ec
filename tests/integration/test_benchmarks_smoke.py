"""Each benchmark runs end to end at a tiny size and writes a results line of the documented shape.

Only the shape is checked: timings on a shared test machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(module: str, *args: str, results: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", f"benchmarks.{module}", *args, "--results", str(results)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (line,) = results.read_text().splitlines()
    record = json.loads(line)
    assert record["cores"] >= 1 and record["date"]
    return record


def test_validate_throughput(tmp_path: Path, models_dir: Path) -> None:
    record = run_benchmark(
        "validate_throughput",
        "--mb",
        "0.5",
        "--model",
        "openft/tiny-chat",
        "--models-dir",
        str(models_dir),
        results=tmp_path / "r.jsonl",
    )
    assert record["benchmark"] == "validate_throughput"
    for name in ("baseline", "openft_tokens", "openft_format"):
        assert record[name]["seconds"] > 0 and record[name]["peak_rss_mb"] > 0
    assert record["openft_tokens"]["examples"] == record["openft_format"]["examples"] == record["lines"]
    assert record["openft_tokens"]["torch_imported"] is False
    assert record["ratio_baseline_over_openft_tokens"] > 0


def test_api_latency(tmp_path: Path) -> None:
    record = run_benchmark(
        "api_latency",
        "--jobs",
        "200",
        "--events",
        "3000",
        "--clients",
        "4",
        "--requests",
        "20",
        results=tmp_path / "r.jsonl",
    )
    assert (record["jobs"], record["events"], record["clients"]) == (200, 3000, 4)
    for name in ("baseline_health", "retrieve", "list", "list_events"):
        assert 0 < record[name]["p50_ms"] <= record[name]["p99_ms"]
    assert record["list_events"]["p99_over_baseline"] > 0


def test_job_startup(tmp_path: Path) -> None:
    record = run_benchmark(
        "job_startup",
        "--model",
        "openft/tiny-chat",
        "--examples",
        "12",
        "--idle-seconds",
        "1",
        results=tmp_path / "r.jsonl",
    )
    for name in ("cold", "warm"):
        events = record[name]["events"]
        assert record[name]["seconds"] > 0
        assert any(m.startswith("Created fine-tuning job") for m in events)
        assert any(m.startswith("Step 1/") for m in events)


def test_train_throughput(tmp_path: Path, models_dir: Path) -> None:
    record = run_benchmark(
        "train_throughput",
        "--model",
        "openft/tiny-chat",
        "--examples",
        "8",
        "--peak-seconds",
        "0.1",
        "--models-dir",
        str(models_dir),
        results=tmp_path / "r.jsonl",
    )
    systems = [r["system"] for r in record["results"]]
    assert systems == ["openft", "openft (bfloat16)", "TRL SFTTrainer"]  # tiny-chat: fp32 by default, + like for like
    assert [r["dtype"] for r in record["results"]] == ["float32", "bfloat16", "bfloat16 autocast"]
    assert all(0 < r["mfu"] < 1 for r in record["results"]), (record["results"], record["matmul_peak_gflops"])
    assert record["matmul_peak_gflops"]["bfloat16"]["peak"] > 0
    assert record["headline_ratio"] > 0 and record["ratio_openft_over_trl"] > 0 and record["parameters"] > 0


def test_learning_quality(tmp_path: Path, models_dir: Path) -> None:
    record = run_benchmark("learning_quality", "--smoke", "--models-dir", str(models_dir), results=tmp_path / "r.jsonl")
    assert record["benchmark"] == "learning_quality" and record["model"] == "openft/tiny-chat"
    assert set(record["base"]) == {"classify", "tool_call"}
    (variant,) = record["variants"].values()
    for task in variant["tasks"].values():
        assert 0 <= task["score"] <= 1 and task["trained_tokens"] > 0 and task["seconds"] > 0
        assert task["hyperparameters"]["n_epochs"] == 1 and task["model"].startswith("ft:openft/tiny-chat")
