"""An eval's testing criteria over one sample: each grader's score, and whether it passes.

The graders are openft's own (``graders/runner.py``), so a criterion grades exactly as the same
grader does in ``/v1/fine_tuning/alpha/graders/run`` and in reinforcement fine-tuning. What an eval
adds is the pass rule: ``string_check`` passes on a match, ``label_model`` when the judge picks one of
``passing_labels``, the others when the score reaches ``pass_threshold``. A criterion that could not
grade (a template naming a missing field, a python grader that raised, a judge that failed) is an
error, not a fail: its output item is ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openft.evals.spec import DEFAULT_PASS_THRESHOLD
from openft.graders.runner import GraderContext, GradeResult, run_grader

PASS = "pass"
FAIL = "fail"
ERROR = "error"


@dataclass
class Grades:
    """The results of every criterion on one sample, in OpenAI's ``results`` shape."""

    results: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    """Judge tokens by model."""

    @property
    def status(self) -> str:
        if any(r.get("error") for r in self.results):
            return ERROR
        return PASS if all(r["passed"] for r in self.results) else FAIL


def passes(criterion: dict[str, Any], result: GradeResult) -> bool:
    """Whether ``result`` passes ``criterion`` (see the module docstring)."""
    kind = criterion["type"]
    if kind == "string_check":
        return result.reward >= 1.0
    if kind == "label_model":
        return result.scores.get("label") in criterion["passing_labels"]
    threshold = criterion.get("pass_threshold")
    return result.reward >= (DEFAULT_PASS_THRESHOLD if threshold is None else threshold)


def _error_message(result: GradeResult) -> str:
    errors = result.errors
    for key in ("python_grader_runtime_error_details", "model_grader_server_error_details"):
        if errors.get(key):
            return str(errors[key])
    if "error" in result.scores:
        return str(result.scores["error"])
    return ", ".join(k for k, v in errors.items() if v is True)


def grade(
    criteria: list[dict[str, Any]], sample: dict[str, Any], item: dict[str, Any], context: GraderContext
) -> Grades:
    """Run every criterion on ``sample`` (the grader ``sample`` namespace) for ``item``."""
    grades = Grades()
    for criterion in criteria:
        grader = {k: v for k, v in criterion.items() if k != "pass_threshold"}
        result = run_grader(grader, sample, item, context)
        entry: dict[str, Any] = {
            "name": criterion["name"],
            "type": criterion["type"],
            "score": result.reward,
            "passed": False if result.failed else passes(criterion, result),
            "sample": None,
        }
        if result.failed:
            entry["error"] = _error_message(result)
        if result.sampled_model_name is not None:
            entry["sample"] = {
                "model": result.sampled_model_name,
                "output": result.scores.get("judge_output"),
                "usage": result.token_usage,
            }
        if "label" in result.scores:
            entry["label"] = result.scores["label"]
        if result.sub_rewards:
            entry["sub_rewards"] = result.sub_rewards
        for model, usage in result.usage_per_model.items():
            total = grades.usage.setdefault(model, {})
            for key, value in usage.items():
                total[key] = total.get(key, 0) + value
        grades.results.append(entry)
    return grades
