"""Training throughput: openft's SFT recipe vs. TRL's ``SFTTrainer`` with its default settings.

Run from the repository root::

    .venv/bin/python -m benchmarks.train_throughput [--model openft/tiny-chat|HuggingFaceTB/SmolLM2-135M-Instruct]
        [--examples N] [--epochs E] [--models-dir DIR] [--skip-trl] [--skip-peak]
        [--method supervised|dpo|reinforcement]

``--method dpo`` and ``--method reinforcement`` measure openft alone (no TRL run) on data made from
the same examples: DPO pairs prefer each example's answer to the next example's; reinforcement
prompts are the system and user turns, graded by a ``string_check`` grader (does the answer
contain "the"), with ``reasoning_effort=low``. Their tokens are every token of both answers (DPO)
or of every prompt and sampled completion (reinforcement).

Both systems train the same base model with the same LoRA (r=16, alpha=32, all linear layers),
batch size 8, learning rate (the catalog's ``lora_learning_rate``), seed 0, on the same
deterministic chat JSONL (short user prompts, assistant answers of lognormal length, 10-300 words).

* openft: ``python -m openft.training spec.json`` in a subprocess; real tokens/s is the
  ``tokens_per_second`` of the last metrics line (trained tokens / seconds spent in training steps).
* TRL: ``SFTTrainer`` with ``SFTConfig`` defaults (padding to the longest example of each batch,
  bf16 autocast, gradient checkpointing, ``max_length=1024``), on the model object loaded with
  ``openft.models.loader.load_model_and_tokenizer``. Real tokens/s = the non-padding tokens of the
  examples (truncated to the same length as openft's, counted with openft's tokenizer) x epochs,
  divided by ``train_runtime``.

Like for like: where openft's ``dtype=auto`` trains in fp32 (``openft/tiny-chat``, kept exact for
tests) while TRL's default autocasts to bf16, openft also runs with ``dtype=bfloat16`` and the
ratio against TRL uses that run.

MFU: 4 x N x real tokens/s (the LoRA convention: forward 2N plus activation gradients 2N, no weight
gradients for frozen weights; N = every parameter of the base model, the tied LM head included,
attention score FLOPs left out) divided by the matmul peak of the dtype the run computes in,
measured in the same run (``benchmarks/matmul_peak.py``).

Prints a table and appends one JSON line to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import append_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WORDS = (
    "the model data training token answer question system user assistant learning rate batch epoch "
    "weights gradient loss adapter layer attention vector matrix memory cache server request response "
    "file format json line example prompt context length window output input value function class "
    "method object string number list table result metric accuracy speed time second minute hour day "
    "simple fast slow large small good better best first last next every each many few some all none "
    "because therefore however although while when where which what who how why can will should would"
).split()


def build_dataset(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def words(k: int) -> str:
        text = " ".join(rng.choice(WORDS) for _ in range(k))
        return text[0].upper() + text[1:] + "."

    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            user_words = rng.randint(5, 25)
            answer_words = int(min(300, max(10, rng.lognormvariate(math.log(60), 0.8))))
            example = {
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": words(user_words)[:-1] + "?"},
                    {"role": "assistant", "content": words(answer_words)},
                ]
            }
            fh.write(json.dumps(example) + "\n")


RFT_GRADER = {
    "type": "string_check",
    "name": "says_the",
    "input": "{{sample.output_text}}",
    "reference": "the",
    "operation": "ilike",
}


def method_data(chat_path: Path, method: str) -> Path:
    """The chat examples of ``chat_path`` as training data of ``method`` (itself for supervised)."""
    if method == "supervised":
        return chat_path
    examples = [json.loads(line) for line in chat_path.read_text().splitlines() if line.strip()]
    path = chat_path.with_name(f"train-{method}.jsonl")
    with path.open("w", encoding="utf-8") as fh:
        for i, example in enumerate(examples):
            prompt, answer = example["messages"][:-1], example["messages"][-1]
            if method == "dpo":
                other = examples[(i + 1) % len(examples)]["messages"][-1]
                line = {"input": {"messages": prompt}, "preferred_output": [answer], "non_preferred_output": [other]}
            else:
                line = {"messages": prompt}
            fh.write(json.dumps(line) + "\n")
    return path


def run_openft(args: argparse.Namespace, base, data: Path, work: Path, dtype: str = "auto") -> dict:
    from openft.training.spec import TrainingSpec

    out = work / f"openft-{dtype}"
    method_fields: dict = {}
    if args.method == "reinforcement":
        method_fields = {"grader": RFT_GRADER, "reasoning_effort": "low"}
    spec = TrainingSpec(
        **method_fields,
        job_id="bench",
        method=args.method,
        base_model=base.id,
        models_dir=str(args.models_dir),
        training_file=str(method_data(data, args.method)),
        validation_file=None,
        output_dir=str(out),
        n_epochs=args.epochs,
        batch_size=8,
        learning_rate_multiplier=1.0,
        learning_rate=base.lora_learning_rate,
        seed=0,
        lora_rank=16,
        lora_alpha=32,
        threads=None,
        dtype=dtype,
    )
    out.mkdir(parents=True, exist_ok=True)
    spec_path = work / f"spec-{dtype}.json"
    spec.write(spec_path)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    # A home of its own, so the tokenized-data cache starts empty for every measurement.
    env = {**os.environ, "OPENFT_HOME": str(work / f"home-{dtype}")}
    subprocess.run([sys.executable, "-m", "openft.training", str(spec_path)], check=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
    metrics = [e for e in events if e["kind"] == "metrics"]
    if not metrics:
        raise RuntimeError(f"openft wrote no metrics: {events[-3:]}")
    last = metrics[-1]
    # A metrics line without tokens_per_second (reinforcement runs before it had one): its steps' durations.
    tps = last.get("tokens_per_second") or last["trained_tokens"] / sum(m["timing"]["full_iteration"] for m in metrics)
    loaded = next((e.get("data") or {} for e in events if "dtype" in (e.get("data") or {})), {})
    return {
        "system": "openft" if dtype == "auto" else f"openft ({dtype})",
        "dtype": loaded.get("dtype", dtype),
        "real_tokens": last["trained_tokens"],
        "train_seconds": last["trained_tokens"] / tps,
        "tokens_per_second": tps,
        "wall_seconds": wall,
        "final_train_loss": last["train_loss"],
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def run_trl(args: argparse.Namespace, base, data: Path, work: Path) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from openft.data.chat_data import load_chat_examples
    from openft.models.loader import load_model_and_tokenizer

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(base, args.models_dir)
    config = SFTConfig(
        output_dir=str(work / "trl"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=8,
        learning_rate=base.lora_learning_rate,
        seed=0,
        report_to="none",
        save_strategy="no",
        logging_steps=10_000,
        use_cpu=not torch.cuda.is_available(),
    )
    # Real tokens, counted as openft counts them: every token of each example, truncated to the
    # same length TRL truncates to (its max_length and the model's context, whichever is shorter).
    max_len = min(base.context_length, config.max_length or base.context_length)
    examples, _ = load_chat_examples(data, tokenizer, max_len)
    real_tokens = sum(len(e.input_ids) for e in examples) * args.epochs

    dataset = load_dataset("json", data_files=str(data), split="train")
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    result = trainer.train()
    wall = time.perf_counter() - started
    runtime = result.metrics["train_runtime"]
    return {
        "system": "TRL SFTTrainer",
        "dtype": "bfloat16 autocast" if config.bf16 else "float32",
        "real_tokens": real_tokens,
        "train_seconds": runtime,
        "tokens_per_second": real_tokens / runtime,
        "wall_seconds": wall,
        "final_train_loss": result.metrics.get("train_loss"),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "sft_config": {
            "bf16": config.bf16,
            "max_length": config.max_length,
            "gradient_checkpointing": config.gradient_checkpointing,
            "packing": config.packing,
            "padding_free": config.padding_free,
        },
    }


def count_parameters(model_dir: Path) -> int:
    """Parameters of the model in ``model_dir``, read from its safetensors headers (tied weights once)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                total += math.prod(f.get_slice(name).get_shape())
    return total


def mfu(result: dict, n_params: int, peaks: dict) -> float | None:
    """Model FLOPs utilisation of one run: 4·N·tokens/s over the peak of the dtype it computes in."""
    compute = "bfloat16" if "bfloat16" in result["dtype"] else "float32"
    peak = peaks.get(compute, {}).get("peak")
    return 4 * n_params * result["tokens_per_second"] / (peak * 1e9) if peak else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="openft/tiny-chat")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument("--method", choices=("supervised", "dpo", "reinforcement"), default="supervised")
    parser.add_argument("--skip-trl", action="store_true", help="measure openft only (always, unless supervised)")
    parser.add_argument("--skip-peak", action="store_true", help="do not measure the matmul peak (no MFU)")
    parser.add_argument("--peak-seconds", type=float, default=2.0, help="seconds per matmul peak point")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    args = parser.parse_args(argv)
    args.skip_trl = args.skip_trl or args.method != "supervised"

    import torch

    from openft.models.catalog import find_base_model

    base = find_base_model(args.model)
    if base is None:
        sys.exit(f"unknown or unavailable base model: {args.model}")
    args.models_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="openft-bench-") as tmp:
        work = Path(tmp)
        data = work / "train.jsonl"
        build_dataset(data, args.examples)
        # Build/convert the base model once, so neither system's timing includes it.
        from openft.models.loader import model_directory

        model_dir = model_directory(base, args.models_dir)
        n_params = count_parameters(model_dir)
        peaks: dict = {}
        if not args.skip_peak:
            from benchmarks.matmul_peak import measure_peaks

            peaks = measure_peaks(args.peak_seconds)
        results = [run_openft(args, base, data, work)]
        if not args.skip_trl and results[0]["dtype"] == "float32":
            results.append(run_openft(args, base, data, work, dtype="bfloat16"))  # like for like with TRL
        if not args.skip_trl:
            results.append(run_trl(args, base, data, work))
        for r in results:
            r["mfu"] = mfu(r, n_params, peaks)

    print()
    print(f"{args.model} ({args.method}): {args.examples} examples x {args.epochs} epoch(s), batch size 8, LoRA r=16")
    print(
        f"{'system':<18} {'dtype':<18} {'real tokens':>12} {'train s':>9} {'wall s':>8} {'real tok/s':>11} {'MFU':>7}"
    )
    for r in results:
        share = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(
            f"{r['system']:<18} {r['dtype']:<18} {r['real_tokens']:>12,} {r['train_seconds']:>9.1f} "
            f"{r['wall_seconds']:>8.1f} {r['tokens_per_second']:>11.1f} {share:>7}"
        )
    if peaks:
        print(f"matmul peak: fp32 {peaks['float32']['peak']:.0f} GFLOP/s, bf16 {peaks['bfloat16']['peak']:.0f} GFLOP/s")
    ratio = ratio_auto = None
    if not args.skip_trl:
        trl = results[-1]["tokens_per_second"]
        ratio_auto = results[0]["tokens_per_second"] / trl
        ratio = results[-2]["tokens_per_second"] / trl  # the bf16 openft run when there are two
        # The goal compares an openft job as a user creates it with SFTTrainer as a user builds it: each
        # system with its defaults (openft's dtype=auto, TRL's bf16 autocast).
        print(f"openft job (dtype=auto, {results[0]['dtype']}) / TRL SFTTrainer defaults: {ratio_auto:.2f}x (goal: 3x)")
        if len(results) == 3:
            print(f"openft forced to bf16 / TRL: {ratio:.2f}x (bf16 compute in both)")

    record = {
        "benchmark": "train_throughput",
        "method": args.method,
        "torch": torch.__version__,
        "model": args.model,
        "parameters": n_params,
        "matmul_peak_gflops": peaks,
        "examples": args.examples,
        "epochs": args.epochs,
        "batch_size": 8,
        "results": results,
        "headline_ratio": ratio_auto,  # openft's defaults over TRL's: the goal's comparison
        "ratio_openft_over_trl": ratio,
        "ratio_openft_auto_over_trl": ratio_auto,
        # OpenMP's waiting policy decides how both systems behave on a shared, loaded machine.
        "env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS") if k in os.environ},
    }
    append_result(record, args.results)  # machine fields first: CPU, cores, flags, load average, date
    return record


if __name__ == "__main__":
    main()
