"""Constrained decoding: the per-token cost of ``json_object`` and ``json_schema`` against plain text.

Run from the repository root::

    .venv/bin/python benchmarks/json_decoding.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--reps 4]
        [--max-tokens 64] [--threads N] [--models-dir DIR]

One process, one ``HFBackend`` (the engine behind ``/v1/chat/completions``, without HTTP). Each
repetition streams one greedy answer per mode, the modes interleaved so that machine noise hits them
alike, after one warm-up each: ``text`` (unconstrained), ``json_object`` (the character-level JSON
machine of ``serving/json_constraint.py``) and ``json_schema`` (llguidance, ``serving/schema_constraint.py``)
with a schema of required keys, an enum, an integer range and a bounded string. Per-token time =
(end - first token) / (completion tokens - 1); overhead = a mode's median per-token time minus the
unconstrained one's. The constraint alone is also timed in CPU time, replaying the first answer's
tokens through it (steadier than wall clock on a busy machine). Every ``json_schema`` answer is
validated against its schema. Prints the table
and appends a JSON line to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_result

from openft.models.catalog import SMOLLM2, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "color": {"enum": ["red", "green", "blue"]},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
    },
    "required": ["name", "color", "age", "hobbies"],
    "additionalProperties": False,
}
PROMPT = [{"role": "user", "content": "Describe a person (name, favourite color, age, hobbies) as JSON."}]
MODES = ("text", "json_object", "json_schema")


def timed(backend: HFBackend, model: ServedModel, params: SamplingParams) -> dict[str, Any]:
    """One streamed answer: its text, tokens and per-token decode time."""
    started = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    tokens = 0
    for delta in backend.stream_chat(model, PROMPT, params):
        if delta.text and first is None:
            first = time.perf_counter()
        text.append(delta.text)
        if delta.usage is not None:
            tokens = delta.usage[1]
    end = time.perf_counter()
    assert first is not None
    per_token = (end - first) / max(tokens - 1, 1)
    ttft = first - started
    return {"text": "".join(text), "tokens": tokens, "per_token_ms": per_token * 1000, "ttft_ms": ttft * 1000}


def constraint_cpu(backend: HFBackend, model: ServedModel, mode: str, text: str) -> float:
    """CPU milliseconds per token the constraint itself costs when replaying ``text``'s tokens: the
    mask (``json_schema``) or the acceptance check (``json_object``) and the advance. CPU time of this
    thread alone, so a busy machine disturbs it less than the wall-clock figures."""
    import torch

    from openft.serving.json_constraint import JsonConstraint
    from openft.serving.schema_constraint import SchemaConstraint, grammar_tokenizer, schema_grammar

    loaded = backend.pool.get(model.base)
    tokens = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
    scores = torch.zeros(vocab)
    started = time.thread_time()
    if mode == "json_schema":
        schema = SchemaConstraint(
            grammar_tokenizer(loaded.tokenizer, vocab, loaded.eos_ids), schema_grammar(SCHEMA), loaded.eos_ids
        )
        started = time.thread_time()  # the tokenizer's one-off build is not per token
        for token in tokens:
            schema.mask(scores.clone())
            schema.advance(token)
    elif mode == "json_object":
        engine = backend._engine(loaded)
        machine = JsonConstraint(engine._texts(), loaded.eos_ids)
        started = time.thread_time()
        for token in tokens:
            machine.allows(token, 1 << 20)
            machine.advance(token)
    return (time.thread_time() - started) * 1000 / max(len(tokens), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    args = parser.parse_args()

    import jsonschema

    base = find_base_model(args.model)
    assert base is not None, args.model
    backend = HFBackend(args.models_dir, threads=args.threads, device="cpu")
    model = ServedModel(id=base.id, base=base)
    params = {
        mode: SamplingParams(
            max_tokens=args.max_tokens,
            temperature=0,
            response_format=mode,  # type: ignore[arg-type]
            json_schema=SCHEMA if mode == "json_schema" else None,
        )
        for mode in MODES
    }
    for mode in MODES:  # warm-up: model load, llguidance's tokenizer, first masks
        timed(backend, model, params[mode])
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.reps):
        for mode in MODES:
            runs[mode].append(timed(backend, model, params[mode]))
    valid = 0
    for run in runs["json_schema"]:
        try:
            jsonschema.validate(json.loads(run["text"]), SCHEMA)
            valid += 1
        except (ValueError, jsonschema.ValidationError):
            pass
    summary = {
        mode: {
            "per_token_ms": round(statistics.median(r["per_token_ms"] for r in runs[mode]), 3),
            "ttft_ms": round(statistics.median(r["ttft_ms"] for r in runs[mode]), 1),
            "tokens": statistics.median(r["tokens"] for r in runs[mode]),
        }
        for mode in MODES
    }
    for mode in MODES:
        summary[mode]["constraint_cpu_ms_per_token"] = round(
            constraint_cpu(backend, model, mode, runs[mode][0]["text"]), 4
        )
    plain = summary["text"]["per_token_ms"]
    for mode in MODES:
        summary[mode]["overhead_ms_per_token"] = round(summary[mode]["per_token_ms"] - plain, 3)
    print(f"{args.model}, greedy, max_tokens {args.max_tokens}, {args.reps} interleaved repetitions")
    for mode in MODES:
        s = summary[mode]
        print(
            f"  {mode:12s} {s['per_token_ms']:7.2f} ms/token  overhead {s['overhead_ms_per_token']:+6.2f} ms/token"
            f"  ttft {s['ttft_ms']:6.1f} ms  tokens {s['tokens']}"
            f"  constraint alone {s['constraint_cpu_ms_per_token']:.3f} CPU ms/token"
        )
    print(f"  json_schema answers valid: {valid}/{len(runs['json_schema'])}; e.g. {runs['json_schema'][0]['text']}")
    append_result(
        {
            "benchmark": "json_decoding",
            "model": args.model,
            "max_tokens": args.max_tokens,
            "reps": args.reps,
            "modes": summary,
            "schema_valid": valid,
            "schema_answers": len(runs["json_schema"]),
        },
        args.results,
    )


if __name__ == "__main__":
    main()
