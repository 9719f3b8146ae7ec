"""Validation throughput: openft's token counting against raw ``tokenizers`` batch encoding of the same file.

Run from the repository root::

    .venv/bin/python -m benchmarks.validate_throughput [--mb 200] [--model ID] [--models-dir DIR]

Generates a chat JSONL of about ``--mb`` megabytes in /tmp (system prompt, a user question, an
assistant answer of lognormal length; fixed seed), then measures, each in a fresh process so
its peak RSS is its own:

* **baseline**: the file's lines, read in batches of 1,024, through the model's Rust tokenizer
  ``encode_batch`` (all cores) and nothing else: the fastest anything could count tokens here;
* **openft tokens**: ``openft.data.tokenize.count_example_tokens`` (parse each line, render the
  model's chat template, ``encode_batch``), what validation uses to find examples over the context;
* **openft format**: ``openft.data.validation.validate_file`` (the streaming format checks).

Prints MB/s and peak RSS of each and the ratio baseline / openft tokens (goal: at most 1.5; peak
RSS under 500 MB), and appends one JSON line to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import append_result, run_measured

WORDS = (
    "the model data training token answer question system user assistant learning rate batch epoch weights "
    "gradient loss adapter layer attention vector matrix memory cache server request response file format json "
    "line example prompt context length window output input value function class method object string number "
    "list table result metric accuracy speed time second minute hour day simple fast slow large small good "
    "better best first last next every each many few some all none because therefore however although while "
    "when where which what who how why can will should would café naïve déjà vu 東京 数据 模型"
).split()

_BASELINE = """
import json, sys, time
from pathlib import Path
from tokenizers import Tokenizer
from benchmarks.common import peak_rss_mb
from openft.data.tokenize import tokenizer_directory
from openft.models.catalog import find_base_model
path, model_id, models_dir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
tok = Tokenizer.from_file(str(tokenizer_directory(find_base_model(model_id), models_dir) / "tokenizer.json"))
started = time.perf_counter()
tokens = 0
with path.open(encoding="utf-8") as f:
    batch = []
    for line in f:
        batch.append(line)
        if len(batch) == 1024:
            tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
            batch = []
    if batch:
        tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
print(json.dumps({"seconds": time.perf_counter() - started, "tokens": tokens, "peak_rss_mb": peak_rss_mb()}))
"""

_TOKENS = """
import json, sys, time
from pathlib import Path
from benchmarks.common import peak_rss_mb
from openft.data.tokenize import count_example_tokens, tokenizer_directory
from openft.models.catalog import find_base_model
path, model_id, models_dir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
tokenizer_directory(find_base_model(model_id), models_dir)  # extracted once, outside the timing
started = time.perf_counter()
stats = count_example_tokens(path, model_id, "supervised", models_dir=models_dir)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "tokens": stats.total_tokens, "examples": stats.examples,
                  "over_context": stats.n_over_context, "peak_rss_mb": peak_rss_mb(),
                  "torch_imported": "torch" in sys.modules}))
"""

_FORMAT = """
import json, sys, time
from benchmarks.common import peak_rss_mb
from openft.data.validation import validate_file
started = time.perf_counter()
report = validate_file(sys.argv[1], "supervised")
print(json.dumps({"seconds": time.perf_counter() - started, "examples": report.n_examples,
                  "errors": len(report.errors), "peak_rss_mb": peak_rss_mb()}))
"""


def build_chat_file(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write chat examples until the file holds ``megabytes`` MB; returns the number of lines."""
    rng = random.Random(seed)
    # A pool of sentences keeps generation fast; examples still differ in length and content.
    pool = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize() + "." for _ in range(4096)]
    target = int(megabytes * 1_000_000)
    written = lines = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < target:
            answer_sentences = max(1, int(rng.lognormvariate(math.log(5), 0.8)))
            example = {
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": rng.choice(pool)[:-1] + "?"},
                    {"role": "assistant", "content": " ".join(rng.choice(pool) for _ in range(answer_sentences))},
                ]
            }
            line = json.dumps(example, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode())
            lines += 1
    return lines


def measure(path: Path, model_id: str, models_dir: Path) -> dict[str, Any]:
    size_mb = path.stat().st_size / 1_000_000
    args = (str(path), model_id, str(models_dir))
    results: dict[str, Any] = {}
    for name, code in (("baseline", _BASELINE), ("openft_tokens", _TOKENS), ("openft_format", _FORMAT)):
        measured = run_measured(code, *args)
        measured["mb_per_second"] = size_mb / measured["seconds"]
        results[name] = measured
    return {
        "file_mb": size_mb,
        **results,
        "ratio_baseline_over_openft_tokens": results["openft_tokens"]["seconds"] / results["baseline"]["seconds"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the generated JSONL (smoke: 5)")
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="openft-validate-bench-") as tmp:
        path = Path(tmp) / "chat.jsonl"
        lines = build_chat_file(path, args.mb)
        record = {"benchmark": "validate_throughput", "model": args.model, "lines": lines}
        record.update(measure(path, args.model, args.models_dir))

    print(f"\nvalidate_throughput: {record['file_mb']:.1f} MB, {lines:,} lines, {args.model}")
    print(f"{'what':<16} {'seconds':>9} {'MB/s':>8} {'peak RSS MB':>12}")
    for name in ("baseline", "openft_tokens", "openft_format"):
        r = record[name]
        print(f"{name:<16} {r['seconds']:>9.2f} {r['mb_per_second']:>8.1f} {r['peak_rss_mb']:>12.0f}")
    ratio = record["ratio_baseline_over_openft_tokens"]
    print(f"openft token counting takes {ratio:.2f}x the raw tokenizers time (goal <= 1.5x)")
    append_result(record, args.results)
    return record


if __name__ == "__main__":
    main()
