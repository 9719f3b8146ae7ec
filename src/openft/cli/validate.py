"""The report of ``openft files validate``: format errors by line (the worker's own checks), token
counts with the target model's tokenizer and chat template, and the tokens a job would train on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openft.data.tokenize import count_example_tokens
from openft.data.validation import validate_file
from openft.jobs.hyperparameters import auto_n_epochs

MAX_LISTED_LINES = 20


def validation_report(path: Path, model: str, method: str, *, n_epochs: int | None = None) -> dict[str, Any]:
    """Everything the command prints, as plain data (``--json`` prints it as is)."""
    report = validate_file(path, method, purpose="training")
    stats = count_example_tokens(path, model, method)
    epochs = n_epochs if n_epochs is not None else auto_n_epochs(report.n_examples)
    return {
        "file": str(path),
        "model": model,
        "method": method,
        "ok": report.ok,
        "examples": report.n_examples,
        "tokens": {
            "counted_examples": stats.examples,
            "min": stats.min_tokens,
            "mean": round(stats.mean_tokens, 1),
            "max": stats.max_tokens,
            "total": stats.total_tokens,
        },
        "context_length": stats.context_length,
        "over_context": {"count": stats.n_over_context, "lines": stats.lines_over_context},
        "errors": [{"line": e.line, "code": e.code, "message": e.message} for e in report.errors],
        "warnings": [{"code": w.code, "message": w.message} for w in report.warnings],
        "n_epochs": epochs,
        "n_epochs_source": "given" if n_epochs is not None else "auto",
        "estimated_trained_tokens": stats.total_tokens * epochs,
    }


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_LISTED_LINES])
    return shown + (", ..." if len(numbers) > MAX_LISTED_LINES else "")


def render_report(r: dict[str, Any]) -> list[str]:
    """The human-readable report, one string per line."""
    t = r["tokens"]
    out = [
        f"{r['file']}: {r['method']} examples for {r['model']}",
        f"examples: {r['examples']}",
    ]
    if t["counted_examples"]:
        out.append(f"tokens per example: min {t['min']:,}, mean {t['mean']:,}, max {t['max']:,}")
    out.append(f"total tokens: {t['total']:,}")
    over = r["over_context"]
    text = f"examples over the context of {r['context_length']:,} tokens: {over['count']}"
    if over["count"]:
        text += f" (lines {_lines(over['lines'])}; they are truncated when trained on)"
    out.append(text)
    out.append(f"format errors: {len(r['errors'])}")
    out.extend(f"  {e['message']}" for e in r["errors"])
    out.extend(f"warning: {w['message']}" for w in r["warnings"])
    epochs = f"{r['n_epochs']} epochs" + (" (auto)" if r["n_epochs_source"] == "auto" else "")
    out.append(f"estimated trained tokens: {r['estimated_trained_tokens']:,} ({t['total']:,} tokens x {epochs})")
    out.append("OK: ready to upload" if r["ok"] else "NOT OK: fix the errors above before uploading")
    return out
