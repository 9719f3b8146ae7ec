"""CPU decoding speed: transformers' forward (the plain path) against the lean forward, and llama.cpp.

Run from the repository root::

    .venv/bin/python benchmarks/decode_speed.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--requests 3]
        [--max-tokens 128] [--clients 8] [--modes plain,fast,fast-bf16,fast-int8] [--threads N]
        [--models-dir DIR] [--no-cold-start] [--llama-bench BIN | --llama-python PY] [--gguf FILE]
        [--llama-threads N]

Everything but the cold start and llama.cpp runs in one process, one ``HFBackend`` per decode mode
(``OPENFT_SERVING_DECODE``: ``plain`` is transformers' forward, ``fast`` the lean forward on fp32
weights, what ``auto`` picks on CPU; ``fast-bf16``/``fast-int8`` the same on converted weights), all
on the same prompts, greedy:

1. Single stream: ``--requests`` streamed chat requests per mode of ``--max-tokens`` new tokens, the
   modes interleaved (machine noise hits them alike) after one warm-up each. TTFT = until the first
   text; decode tok/s = (completion tokens - 1) / (end - first token). Each mode's answers are
   compared with the plain path's: identical answers, and the share of tokens before the first
   difference (what a precision change costs, measured).
2. Concurrency: ``--clients`` threads each streaming one request, spread round-robin over four LoRA
   adapters of the base (made for the run, as ``benchmarks/serving.py`` makes them), for every mode;
   aggregate tok/s = completion tokens / wall time.
3. Cold start (unless ``--no-cold-start``): ``openft serve`` on a first install (empty home and user
   cache: the GGUF converted on the first request), on a new home (the conversion in the user cache),
   and on that home restarted (the model preloaded by the default ``OPENFT_SERVING_PRELOAD=recent``);
   for each, the seconds to ``/health`` and from there to the first SmolLM2 answer through the
   official client.
4. llama.cpp, when ``--llama-python`` names a Python that has ``llama-cpp-python`` (it has no wheel
   for this platform and builds from source in over 25 minutes here, so it lives in an environment
   of its own, e.g. ``python -m venv /tmp/llama && /tmp/llama/bin/pip install llama-cpp-python``):
   the catalog's GGUF (or ``--gguf``) on ``--llama-threads`` threads, the same story prompt, greedy,
   ``--clients`` requests one after another (median decode tok/s and TTFT, and the sequential
   throughput that the concurrency figure is compared with). Without it the line carries the
   figures measured earlier on the 2-core EPYC (Q4_1, 2 threads: ~134 tok/s, 9 ms TTFT).
   ``--llama-bench`` instead runs llama.cpp's ``llama-bench`` (one CMake target of llama.cpp's sources,
   e.g. those vendored in llama-cpp-python's source distribution) on the same GGUF: decode tok/s, the
   prompt's processing time as TTFT, and the sequential rate of one request after another.

Prints a table and appends a JSON line to ``benchmarks/results.jsonl``.
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


def _first_answer(home: Path, env: dict[str, str], model_id: str, log: Path) -> dict[str, float]:
    """Start ``openft serve`` on ``home``; seconds to ``/health`` and from it to the first answer."""
    import httpx
    from openai import OpenAI

    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "openft", "serve", "--no-worker", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env, "OPENFT_HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"the server did not answer /health (its log: {log})")
            time.sleep(0.05)
        ready = time.perf_counter()
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", timeout=600)
        client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=16, temperature=0
        )
        answered = time.perf_counter()
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"health_s": round(ready - started, 2), "first_answer_after_health_s": round(answered - ready, 2)}


def cold_start(model_id: str) -> dict[str, Any]:
    """A server's first answer: on a first install, on a new home, and on that home restarted.

    ``first_install``: an empty home and an empty user cache (``XDG_CACHE_HOME``): the GGUF is
    converted on the first request, and nothing is preloaded (the home has served nothing).
    ``new_home``: another empty home, the conversion now in the user cache (linked, not redone).
    ``restarted``: that home started again with the default ``OPENFT_SERVING_PRELOAD=recent``, which
    loads the model it served before as the server starts.
    """
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        env = {"OPENFT_SERVING_PRELOAD": "recent", "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        try:
            return {
                "first_install": _first_answer(Path(tmp) / "a", env, model_id, log),
                "new_home": _first_answer(Path(tmp) / "b", env, model_id, log),
                "restarted": _first_answer(Path(tmp) / "b", env, model_id, log),
            }
        except Exception:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise


LLAMA_CPP_RUN = """
import json, sys, time, llama_cpp
path, prompt, max_tokens, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_ctx=2048, verbose=False)
messages = [{"role": "user", "content": prompt}]
for _ in llm.create_chat_completion(messages, max_tokens=4, stream=True):
    pass  # warm-up, as the openft modes get one
runs = []
for _ in range(int(sys.argv[5])):
    started, first, tokens = time.perf_counter(), 0.0, 0
    for chunk in llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            first = first or time.perf_counter()
    ended = time.perf_counter()
    runs.append({"decode_tok_s": (tokens - 1) / (ended - first), "ttft_ms": (first - started) * 1000,
                 "tokens": tokens, "seconds": ended - started})
sequential = sum(r["tokens"] for r in runs) / sum(r["seconds"] for r in runs)
runs.sort(key=lambda r: r["decode_tok_s"])
print(json.dumps({**runs[len(runs) // 2], "sequential_tok_s": sequential, "requests": len(runs)}))
"""


def llama_cpp(python: str | None, gguf: Path | None, max_tokens: int, threads: int, requests: int) -> dict[str, Any]:
    """llama.cpp's single-stream decode and TTFT on ``gguf``, run by ``python`` (an environment that has
    ``llama-cpp-python``: it has no wheel here and builds from source, so it is not a dependency)."""
    if python is None:
        return {
            "measured": False,
            "why": "no --llama-python: llama-cpp-python has no wheel for this platform and builds from "
            "source (over 25 minutes on the 2-core machine)",
            "reported_on_this_machine": LLAMA_CPP_REPORTED,
        }
    if gguf is None:
        return {"measured": False, "why": "no --gguf given", "reported_on_this_machine": LLAMA_CPP_REPORTED}
    args = [python, "-c", LLAMA_CPP_RUN, str(gguf), STORY, str(max_tokens), str(threads), str(requests)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    return {"measured": True, **{k: round(v, 2) for k, v in measured.items()}, "gguf": gguf.name, "threads": threads}


def llama_bench(
    binary: Path, gguf: Path, prompt_tokens: int, max_tokens: int, threads: int, reps: int
) -> dict[str, Any]:
    """llama.cpp's own ``llama-bench`` (built from llama.cpp's sources with CMake, a few minutes for this
    one target): prompt processing of ``prompt_tokens`` and generation of ``max_tokens`` on ``gguf``.
    TTFT is the prompt's processing time; the sequential rate counts a request's prompt and generation."""
    args = [str(binary), "-m", str(gguf), "-t", str(threads), "-p", str(prompt_tokens), "-n", str(max_tokens)]
    args += ["-r", str(reps), "-o", "json"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
    rates = {("prompt" if r["n_prompt"] else "decode"): float(r["avg_ts"]) for r in json.loads(out.stdout)}
    seconds = prompt_tokens / rates["prompt"] + max_tokens / rates["decode"]
    return {
        "measured": True,
        "how": f"llama-bench, {gguf.name}, {threads} threads, {reps} repetitions",
        "decode_tok_s": round(rates["decode"], 2),
        "ttft_ms": round(prompt_tokens / rates["prompt"] * 1000, 1),
        "prompt_tokens": prompt_tokens,
        "sequential_tok_s": round(max_tokens / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--requests", type=int, default=3, help="single-stream requests per mode")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--modes", default="plain,fast,fast-bf16,fast-int8")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument(
        "--gguf", type=Path, default=None, help="the model's GGUF for llama.cpp (default: the catalog's)"
    )
    parser.add_argument("--llama-python", default=None, help="a Python that has llama-cpp-python installed")
    parser.add_argument("--llama-bench", type=Path, default=None, help="llama.cpp's llama-bench binary")
    parser.add_argument("--llama-threads", type=int, default=os.cpu_count() or 1)
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
        for mode in modes:
            for m in tuned:  # load every adapter before the clock starts
                one_request(backends[mode], m, PROMPTS[0], 2)
            many[mode] = concurrent(backends[mode], tuned, args.clients, 1, args.max_tokens)
    cold = None if args.no_cold_start else cold_start(base.id)
    gguf = args.gguf or (Path(base.path) if base.source == "gguf" and base.path else None)
    if args.llama_bench is not None and gguf is not None:
        tokenizer = backends[modes[0]].tokenizer(model)
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": STORY}], add_generation_prompt=True, tokenize=False
        )
        prompt_tokens = len(tokenizer(chat, add_special_tokens=False)["input_ids"])
        reference = llama_bench(args.llama_bench, gguf, prompt_tokens, args.max_tokens, args.llama_threads, 5)
    else:
        reference = llama_cpp(args.llama_python, gguf, args.max_tokens, args.llama_threads, args.clients)

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
    for name, c in (cold or {}).items():
        after = c["first_answer_after_health_s"]
        print(f"  cold start, {name} home: /health after {c['health_s']} s, first answer {after} s later")
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
