"""Multi graders (map, list and single forms), model graders over a stand-in judge, and grader checks."""

from __future__ import annotations

from typing import Any

import pytest

from openft.errors import InvalidRequest, ModelNotFound
from openft.graders import GraderContext, make_sample, parse_grader, run_grader
from openft.graders.judge import JudgeReply, parse_label, parse_score
from openft.serving.backend import SamplingParams

EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "Paris",
    "operation": "eq",
}
LOOSE = {
    "type": "string_check",
    "name": "loose",
    "input": "{{sample.output_text}}",
    "reference": "paris",
    "operation": "ilike",
}


def multi(graders: Any, formula: str) -> dict[str, Any]:
    return {"type": "multi", "name": "combined", "graders": graders, "calculate_output": formula}


def grade(grader: dict[str, Any], output: str, context: GraderContext | None = None) -> Any:
    return run_grader(parse_grader(grader), make_sample(output), {}, context or GraderContext())


def test_map_form_uses_the_keys_as_variables() -> None:
    result = grade(multi({"a": EXACT, "b": LOOSE}, "0.25 * a + 0.75 * b"), "It is Paris")
    assert result.reward == pytest.approx(0.75)
    assert result.sub_rewards == {"a": 0.0, "b": 1.0}


def test_list_form_uses_the_grader_names() -> None:
    result = grade(multi([EXACT, LOOSE], "(exact + loose) / 2"), "Paris")
    assert result.reward == pytest.approx(1.0)
    assert set(result.sub_rewards) == {"exact", "loose"}


def test_single_form() -> None:
    assert grade(multi(LOOSE, "loose ^ 2"), "PARIS!").reward == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("grader", "match"),
    [
        (multi({"a": EXACT}, "a + b"), "not one of the graders"),
        (multi({"a": EXACT}, "a +"), "not valid"),
        (multi({"a": EXACT}, "__import__('os')"), "Unknown function"),
        ({"type": "string_check", "name": "x", "input": "a", "reference": "b", "operation": "regex"}, "operation"),
        ({"type": "string_check", "name": "x", "input": "a", "reference": "b"}, "operation"),
        ({"type": "nope", "name": "x"}, "type"),
        ({"type": "python", "name": "x", "source": "def grade(s, i) return 1"}, "does not compile"),
        ({"type": "python", "name": "x", "source": "x = 1"}, "must define grade"),
        (
            {"type": "label_model", "name": "x", "model": "m", "input": [], "labels": ["a"], "passing_labels": ["b"]},
            "subset",
        ),
        ({"type": "score_model", "name": "x", "model": "m", "input": [], "range": [1, 0]}, "low < high"),
        (multi({"inner": multi({"a": EXACT}, "a")}, "inner"), "graders"),
    ],
)
def test_invalid_graders_are_refused_with_a_message(grader: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as caught:
        parse_grader(grader)
    assert caught.value.param == "grader"


class ScriptedJudge:
    """Stands in for a served model: answers with a fixed text and records what it was asked."""

    def __init__(self, text: str):
        self.text = text
        self.calls: list[tuple[str, list[dict[str, str]], SamplingParams]] = []

    def __call__(self, model: str, messages: list[dict[str, str]], params: SamplingParams) -> JudgeReply:
        self.calls.append((model, messages, params))
        return JudgeReply(self.text, model, prompt_tokens=11, completion_tokens=3)


def score_grader(**extra: Any) -> dict[str, Any]:
    return {
        "type": "score_model",
        "name": "judge",
        "model": "openft/tiny-chat",
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "Reference: {{item.ref}}\nAnswer: {{sample.output_text}}"}],
            }
        ],
        **extra,
    }


def test_score_model_renders_the_prompt_parses_and_clamps() -> None:
    judge = ScriptedJudge('{"result": 7.5, "steps": []}')
    grader = parse_grader(
        score_grader(range=[0, 5], sampling_params={"temperature": 0.5, "max_completions_tokens": 20})
    )
    result = run_grader(grader, make_sample("Lyon"), {"ref": "Paris"}, GraderContext(judge=judge))
    assert result.reward == 5.0
    model, messages, params = judge.calls[0]
    assert model == "openft/tiny-chat"
    assert messages[-1] == {"role": "user", "content": "Reference: Paris\nAnswer: Lyon"}
    assert params.temperature == 0.5 and params.max_tokens == 20
    assert result.token_usage == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14, "cached_tokens": 0}
    assert result.usage_per_model == {"openft/tiny-chat": result.token_usage}


def test_score_model_without_a_number_is_a_parse_error() -> None:
    result = run_grader(
        parse_grader(score_grader()), make_sample("x"), {"ref": "y"}, GraderContext(judge=ScriptedJudge("no idea"))
    )
    assert result.reward == 0.0
    assert result.errors["model_grader_parse_error"] is True


def test_an_unreachable_judge_is_a_server_error() -> None:
    def missing(model: str, messages: Any, params: Any) -> JudgeReply:
        raise ModelNotFound(f"The model `{model}` does not exist")

    result = run_grader(parse_grader(score_grader()), make_sample("x"), {"ref": "y"}, GraderContext(judge=missing))
    assert result.reward == 0.0
    assert result.errors["model_grader_server_error"] is True
    assert "does not exist" in result.errors["model_grader_server_error_details"]


def test_label_model_passes_on_a_passing_label() -> None:
    grader = {
        "type": "label_model",
        "name": "sentiment",
        "model": "openft/tiny-chat",
        "input": [{"role": "user", "content": "Classify: {{sample.output_text}}"}],
        "labels": ["positive", "negative"],
        "passing_labels": ["positive"],
    }
    assert grade(grader, "great", GraderContext(judge=ScriptedJudge("Positive."))).reward == 1.0
    assert grade(grader, "awful", GraderContext(judge=ScriptedJudge("negative"))).reward == 0.0


def test_reply_parsers() -> None:
    assert parse_score('Here: {"result": 0.8}') == 0.8
    assert parse_score("I'd say 3 out of 5") == 3.0
    assert parse_score("nothing") is None
    assert parse_label("The answer is negative, not positive", ["positive", "negative"]) == "negative"
    assert parse_label("maybe", ["yes", "no"]) is None
