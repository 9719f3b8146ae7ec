"""CPU decoding speed: transformers' forward (the plain path) against the lean forward, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/decode_speed.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--requests 3]
        [--max-tokens 128] [--clients 8] [--modes plain,fast,fast-bf16,fast-int8] [--threads N]
        [--models-dir DIR] [--no-cold-start]

Everything but the cold start runs in one process, one ``HFBackend`` per decode mode
(``OPENFT_SERVING_DECODE``: ``plain`` is the path served before, ``fast`` the lean forward on fp32
weights, ``fast-bf16``/``fast-int8`` on converted weights; ``auto`` on CPU is ``fast-int8`` for
SmolLM2), all on the same prompts, greedy:

1. Single stream: ``--requests`` streamed chat requests per mode of ``--max-tokens`` new tokens, the
   modes interleaved (machine noise hits them alike) after one warm-up each. TTFT = until the first
   text; decode tok/s = (completion tokens - 1) / (end - first token). Each mode's answers are
   compared with the plain path's: identical answers, and the share of tokens before the first
   difference (what a precision change costs, measured).
2. Concurrency: ``--clients`` threads each streaming one request, spread round-robin over four LoRA
   adapters of the base (made for the run, as ``benchmarks/serving.py`` makes them), for ``plain``
   and the last mode; aggregate tok/s = completion tokens / wall time.
3. Cold start (unless ``--no-cold-start``): ``openft serve`` on a fresh home whose model cache is
   ``--models-dir`` (converted once, as any earlier run leaves it) and ``OPENFT_SERVING_PRELOAD`` naming
   the model (what ``recent`` does on a home that served it before); the seconds from ``/health``
   answering to the first SmolLM2 answer through the official client.

llama.cpp (llama-cpp-python) is measured when it is importable with a GGUF at ``--gguf``; it has no
wheel for this platform and building it takes longer than the benchmark, so otherwise the line says
so and carries the figures measured on the 2-core machine (Q4_1, 2 threads: ~134 tok/s, 9 ms TTFT)
for reference. Prints a table and appends a JSON line to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_result
from serving import PROMPTS, concurrent, make_adapters, one_request

from openft.models.catalog import SMOLLM2, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend

LLAMA_CPP_REPORTED = {"decode_tok_s": 134, "ttft_ms": 9, "how": "llama-cpp-python, Q4_1 GGUF, 2 threads"}
STORY = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def greedy_tokens(backend: HFBackend, model: ServedModel, max_tokens: int) -> list[int]:
    text = backend.chat(
        model, [{"role": "user", "content": STORY}], SamplingParams(max_tokens=max_tokens, temperature=0)
    )
    return list(backend.tokenizer(model)(text.choices[0].text, add_special_tokens=False)["input_ids"])


def agreement(reference: list[int], other: list[int]) -> float:
    """Share of the reference's tokens before the first difference."""
    same = next(
        (i for i, (a, b) in enumerate(zip(reference, other, strict=False)) if a != b), min(len(reference), len(other))
    )
    return same / max(len(reference), 1)


def single_stream(backends: dict[str, HFBackend], model: ServedModel, requests: int, max_tokens: int) -> dict[str, Any]:
    for backend in backends.values():  # warm-up: loading, conversion, first allocations
        one_request(backend, model, PROMPTS[0], 8)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in backends}
    for i in range(requests):
        order = list(backends.items())
        for mode, backend in order if i % 2 == 0 else order[::-1]:
            runs[mode].append(one_request(backend, model, STORY, max_tokens))
    reference = greedy_tokens(backends["plain"], model, max_tokens) if "plain" in backends else None
    out: dict[str, Any] = {}
    for mode, rs in runs.items():
        out[mode] = {
            "decode_tok_s": round(statistics.median(r["decode_tps"] for r in rs), 2),
            "ttft_ms": round(statistics.median(r["ttft"] for r in rs) * 1000, 1),
            "tokens_per_request": statistics.median(r["tokens"] for r in rs),
        }
        if reference is not None:
            tokens = greedy_tokens(backends[mode], model, max_tokens)
            out[mode]["greedy_identical"] = tokens == reference
            out[mode]["greedy_agreement"] = round(agreement(reference, tokens), 3)
    return out


def cold_start(models_dir: Path, model_id: str) -> dict[str, Any]:
    """Seconds from a fresh server's ``/health`` to its first answer (the model cache already filled)."""
    import httpx
    from openai import OpenAI

    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "models").symlink_to(models_dir.resolve())
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "OPENFT_HOME": home, "OPENFT_SERVING_PRELOAD": model_id}
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "openft", "serve", "--no-worker", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > 120:
                    raise RuntimeError("the server did not answer /health within 120 s")
                time.sleep(0.05)
            ready = time.perf_counter()
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", timeout=300)
            client.chat.completions.create(
                model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=16, temperature=0
            )
            answered = time.perf_counter()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {"health_s": round(ready - started, 2), "first_answer_after_health_s": round(answered - ready, 2)}


def llama_cpp(gguf: Path | None, max_tokens: int) -> dict[str, Any]:
    try:
        import llama_cpp  # type: ignore[import-not-found]  # optional, no wheel here
    except ImportError:
        return {
            "measured": False,
            "why": "llama-cpp-python is not installed: no wheel for this platform, and building it from "
            "source takes longer than this benchmark",
            "reported_on_this_machine": LLAMA_CPP_REPORTED,
        }
    if gguf is None:
        return {"measured": False, "why": "no --gguf given", "reported_on_this_machine": LLAMA_CPP_REPORTED}
    llm = llama_cpp.Llama(model_path=str(gguf), n_threads=os.cpu_count(), verbose=False)
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    for _ in llm.create_chat_completion([{"role": "user", "content": STORY}], max_tokens=max_tokens, stream=True):
        tokens += 1
        first = first or time.perf_counter()
    ended = time.perf_counter()
    return {"measured": True, "decode_tok_s": (tokens - 1) / (ended - first), "ttft_ms": (first - started) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--requests", type=int, default=3, help="single-stream requests per mode")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--modes", default="plain,fast,fast-bf16,fast-int8")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument("--gguf", type=Path, default=None, help="a GGUF of the model, for llama.cpp")
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    args = parser.parse_args()

    base = find_base_model(args.model)
    assert base is not None, args.model
    model = ServedModel(id=base.id, base=base)
    modes = args.modes.split(",")
    backends = {mode: HFBackend(args.models_dir, threads=args.threads, device="cpu", decode=mode) for mode in modes}
    single = single_stream(backends, model, args.requests, args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = make_adapters(base, args.models_dir, Path(tmp), 4)
        tuned = [ServedModel(id=f"ft:{base.id}:bench:a{i}:x", base=base, adapter_dir=d) for i, d in enumerate(adapters)]
        many: dict[str, Any] = {}
        for mode in dict.fromkeys(["plain", modes[-1]]):
            if mode in backends:
                for m in tuned:  # load every adapter before the clock starts
                    one_request(backends[mode], m, PROMPTS[0], 2)
                many[mode] = concurrent(backends[mode], tuned, args.clients, 1, args.max_tokens)
    cold = None if args.no_cold_start else cold_start(args.models_dir, base.id)
    reference = llama_cpp(args.gguf, args.max_tokens)

    print(f"{args.model}, greedy, {args.max_tokens} new tokens, CPU: see the results line")
    for mode, s in single.items():
        extra = f"  greedy identical to plain: {s.get('greedy_identical')} (agreement {s.get('greedy_agreement')})"
        print(f"  {mode:10s} single stream {s['decode_tok_s']:7.1f} tok/s  TTFT {s['ttft_ms']:7.1f} ms{extra}")
    for mode, c in many.items():
        print(f"  {mode:10s} {args.clients} streams over 4 adapters: {c['tok_s']:7.1f} tok/s aggregate")
    if "plain" in single:
        for mode in single:
            ratio = single[mode]["decode_tok_s"] / max(single["plain"]["decode_tok_s"], 1e-9)
            print(f"  {mode:10s} single-stream speed-up over plain: {ratio:.2f}x")
    if cold:
        print(
            f"  cold start: /health after {cold['health_s']} s,"
            f" first answer {cold['first_answer_after_health_s']} s later"
        )
    print(f"  llama.cpp: {reference}")
    append_result(
        {
            "benchmark": "decode_speed",
            "model": args.model,
            "max_tokens": args.max_tokens,
            "requests": args.requests,
            "single_stream": single,
            "concurrent_4_adapters": {m: {k: round(v, 2) for k, v in c.items()} for m, c in many.items()},
            "clients": args.clients,
            "cold_start": cold,
            "llama_cpp": reference,
        },
        args.results,
    )


if __name__ == "__main__":
    main()
