"""A finished run's numbers from its output items: ``result_counts``, ``per_testing_criteria_results``
and ``per_model_usage`` (the answering model's tokens and every judge's)."""

from __future__ import annotations

from typing import Any

from openft.store.evals import OutputItemRow

_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")


def _add_usage(totals: dict[str, dict[str, int]], model: str, usage: dict[str, int] | None, calls: int) -> None:
    if not model or not usage:
        return
    entry = totals.setdefault(model, {"invocation_count": 0, **dict.fromkeys(_USAGE_KEYS, 0)})
    entry["invocation_count"] += calls
    for key in _USAGE_KEYS:
        entry[key] += int(usage.get(key) or 0)


def summarize(testing_criteria: list[dict[str, Any]], items: list[OutputItemRow]) -> dict[str, Any]:
    """The run's ``result_counts``, ``per_testing_criteria_results`` and ``per_model_usage``.

    An item counts as passed when every criterion passed, failed when one failed, errored when its
    sample or a criterion could not be produced. Per criterion, a result that errored counts as failed
    (OpenAI's shape has passed and failed only).
    """
    counts = {"total": len(items), "passed": 0, "failed": 0, "errored": 0}
    per_criterion = {c["name"]: {"testing_criteria": c["name"], "passed": 0, "failed": 0} for c in testing_criteria}
    usage: dict[str, dict[str, int]] = {}
    for item in items:
        counts[{"pass": "passed", "fail": "failed"}.get(item.status, "errored")] += 1
        for result in item.results:
            entry = per_criterion.get(result["name"])
            if entry is not None:
                entry["passed" if result.get("passed") else "failed"] += 1
        sample = item.sample or {}
        if sample.get("usage", {}).get("total_tokens"):
            _add_usage(usage, sample.get("model") or "", sample.get("usage"), 1)
        for model, tokens in (sample.get("grader_usage") or {}).items():
            calls = sum(1 for r in item.results if (r.get("sample") or {}).get("model") == model)
            _add_usage(usage, model, tokens, calls)
    return {
        "result_counts": counts,
        "per_testing_criteria_results": list(per_criterion.values()),
        "per_model_usage": [{"model_name": model, **totals} for model, totals in usage.items()],
    }
