"""Evals without a server: create-time checks (data source config, criteria, templates), the pass rule of
each criterion type, run data sources (messages, sampling), and a run's summary from its output items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openft.errors import InvalidRequest
from openft.evals import criteria, report, sources, spec
from openft.graders.judge import JudgeReply
from openft.graders.runner import GraderContext
from openft.graders.spec import parse_grader
from openft.graders.template import TemplateError, make_sample
from openft.serving.backend import SamplingParams
from openft.store.evals import OutputItemRow

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "string"}}, "required": ["q", "a"]}
EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.a}}",
    "operation": "eq",
}
SIM = {
    "type": "text_similarity",
    "name": "sim",
    "input": "{{sample.output_text}}",
    "reference": "{{item.a}}",
    "evaluation_metric": "fuzzy_match",
    "pass_threshold": 0.9,
}


def _criteria(items: list[dict[str, Any]], schema: dict[str, Any] | None = SCHEMA) -> list[dict[str, Any]]:
    return spec.testing_criteria(items, validate=lambda g, p: parse_grader(g, param=p), schema=schema)


def test_custom_config_wraps_the_item_schema_and_checks_it() -> None:
    config = spec.data_source_config({"type": "custom", "item_schema": SCHEMA, "include_sample_schema": True})
    assert config["schema"]["properties"]["item"] == SCHEMA
    assert config["schema"]["required"] == ["item", "sample"]
    assert spec.item_schema(config) == SCHEMA
    with pytest.raises(InvalidRequest) as caught:
        spec.data_source_config({"type": "custom", "item_schema": {"type": 5}})
    assert caught.value.param == "data_source_config.item_schema"
    with pytest.raises(InvalidRequest):
        spec.data_source_config({"type": "nope"})
    stored = spec.data_source_config({"type": "stored_completions", "metadata": {"topic": "geo"}})
    assert stored["metadata"] == {"topic": "geo"} and "input" in spec.item_schema(stored)["properties"]


def test_criteria_keep_their_threshold_and_refuse_what_cannot_run() -> None:
    parsed = _criteria([EXACT, {**SIM, "evaluation_metric": "bleu", "pass_threshold": 0.7}])
    assert parsed[1]["pass_threshold"] == 0.7 and "operation" not in parsed[1]
    refusals = [
        ([{"type": "bleu", "name": "x"}], "testing_criteria[0].type"),
        ([{k: v for k, v in SIM.items() if k != "pass_threshold"}], "testing_criteria[0].pass_threshold"),
        ([EXACT, EXACT], "testing_criteria"),
        ([{**EXACT, "reference": "{{item.missing}}"}], "testing_criteria[0]"),
        ([{**EXACT, "reference": "{{other.a}}"}], "testing_criteria[0]"),
        ([{**EXACT, "reference": "{{item.a[}}"}], "testing_criteria[0]"),
        ([], "testing_criteria"),
    ]
    for items, param in refusals:
        with pytest.raises(InvalidRequest) as caught:
            _criteria(items)
        assert caught.value.param == param, items
    assert _criteria([{**EXACT, "reference": "{{item.anything}}"}], schema={"type": "object"})  # nothing declared


def test_template_checks_allow_only_the_namespaces_given() -> None:
    spec.check_templates("{{item.q}} {{ item.a }}", param="p", namespaces=("item",), schema=SCHEMA)
    with pytest.raises(InvalidRequest) as caught:
        spec.check_templates("{{sample.output_text}}", param="p", namespaces=("item",), schema=SCHEMA)
    assert caught.value.code == "invalid_template"


class _Judge:
    def __init__(self, reply: str):
        self.reply = reply

    def __call__(self, model: str, messages: list[dict[str, str]], params: SamplingParams) -> JudgeReply:
        return JudgeReply(text=self.reply, model=model, prompt_tokens=10, completion_tokens=2)


def test_pass_rules_per_criterion_type() -> None:
    label = {
        "type": "label_model",
        "name": "judge",
        "model": "m",
        "labels": ["good", "bad"],
        "passing_labels": ["good"],
        "input": [{"role": "user", "content": "{{sample.output_text}}"}],
    }
    parsed = _criteria([EXACT, SIM, label])
    grades = criteria.grade(parsed, make_sample("Paris"), {"q": "?", "a": "Paris"}, GraderContext(judge=_Judge("good")))
    assert grades.status == "pass"
    assert [r["passed"] for r in grades.results] == [True, True, True]
    assert grades.results[2]["label"] == "good" and grades.usage == {
        "m": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cached_tokens": 0}
    }
    grades = criteria.grade(parsed, make_sample("Lyon"), {"q": "?", "a": "Paris"}, GraderContext(judge=_Judge("bad")))
    assert [r["passed"] for r in grades.results] == [False, False, False] and grades.status == "fail"
    grades = criteria.grade(parsed, make_sample("x"), {"q": "?"}, GraderContext(judge=_Judge("good")))
    assert grades.status == "error" and "item.a" in grades.results[0]["error"]
    unparsable = criteria.grade(parsed[2:], make_sample("x"), {}, GraderContext(judge=_Judge("maybe")))
    assert unparsable.status == "error"


def test_python_and_score_criteria_pass_at_their_threshold() -> None:
    score = {"type": "score_model", "name": "s", "model": "m", "input": [{"role": "user", "content": "rate"}]}
    assert criteria.grade(_criteria([score]), make_sample("x"), {}, GraderContext(judge=_Judge("0.5"))).status == "pass"
    strict = _criteria([{**score, "pass_threshold": 0.8}])
    assert criteria.grade(strict, make_sample("x"), {}, GraderContext(judge=_Judge("0.5"))).status == "fail"


def test_input_messages_render_templates_and_item_references() -> None:
    template = {
        "type": "template",
        "template": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "{{item.q}}"}]},
        ],
    }
    assert sources.messages(template, {"q": "Why?"}) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why?"},
    ]
    chat = [{"role": "user", "content": "Hi"}]
    assert sources.messages({"type": "item_reference", "item_reference": "item.input"}, {"input": chat}) == chat
    assert sources.messages(None, {"input": chat}) == chat
    with pytest.raises(TemplateError):
        sources.messages(template, {})
    with pytest.raises(TemplateError):
        sources.messages({"type": "item_reference", "item_reference": "item.input"}, {"input": "text"})


def test_sampling_params_and_their_ranges() -> None:
    params = sources.sampling(
        {
            "temperature": 0,
            "max_completion_tokens": 12,
            "top_p": 0.5,
            "seed": 3,
            "response_format": {"type": "json_object"},
        }
    )
    assert (params.temperature, params.max_tokens, params.top_p, params.seed, params.response_format) == (
        0.0,
        12,
        0.5,
        3,
        "json_object",
    )
    for bad in (
        {"temperature": 3},
        {"top_p": 2},
        {"max_completion_tokens": 0},
        {"seed": "x"},
        {"response_format": {"type": "yaml"}},
    ):
        with pytest.raises(InvalidRequest):
            sources.sampling(bad)


def test_file_items_report_bad_lines_as_errors(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"item": {"q": "a", "a": "b"}}\n\nnot json\n{"item": {"q": 1, "a": "b"}}\n{"other": 1}\n')
    items = list(sources.read_file_items(path, SCHEMA))
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert items[0].error is None and items[0].item == {"q": "a", "a": "b"}
    assert "not JSON" in (items[1].error or "")
    assert "item_schema" in (items[2].error or "")
    assert "item" in (items[3].error or "")


def test_check_refuses_bad_run_data_sources() -> None:
    def check(data_source: Any) -> str | None:
        return sources.check(
            data_source, schema=SCHEMA, file_exists=lambda f: f == "file-ok", model_exists=lambda m: m == "good-model"
        )

    content = {"type": "file_content", "content": [{"item": {"q": "x", "a": "y"}}]}
    template = {"type": "template", "template": [{"role": "user", "content": "{{item.q}}"}]}
    assert check({"type": "jsonl", "source": content}) is None
    assert (
        check({"type": "completions", "model": "good-model", "source": content, "input_messages": template})
        == "good-model"
    )
    refusals = [
        ({"type": "responses", "source": content}, "data_source.type"),
        ({"type": "jsonl", "source": {"type": "file_id", "id": "file-gone"}}, "data_source.source.id"),
        (
            {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"q": 1}}]}},
            "data_source.source.content[0]",
        ),
        ({"type": "jsonl", "source": {"type": "stored_completions"}}, "data_source.source.type"),
        (
            {"type": "completions", "model": "bad-model", "source": content, "input_messages": template},
            "data_source.model",
        ),
        ({"type": "completions", "source": content, "input_messages": template}, "data_source.model"),
        ({"type": "completions", "model": "good-model", "source": content}, "data_source.input_messages"),
        (
            {
                "type": "completions",
                "model": "good-model",
                "source": content,
                "input_messages": {
                    "type": "template",
                    "template": [{"role": "user", "content": "{{sample.output_text}}"}],
                },
            },
            "data_source.input_messages",
        ),
    ]
    for data_source, param in refusals:
        with pytest.raises(InvalidRequest) as caught:
            check(data_source)
        assert caught.value.param == param, data_source


def _item(index: int, status: str, results: list[dict[str, Any]], usage: int) -> OutputItemRow:
    sample = {
        "model": "m",
        "usage": {"prompt_tokens": usage, "completion_tokens": usage, "total_tokens": 2 * usage},
        "grader_usage": {"judge": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
    }
    return OutputItemRow(
        id=f"o{index}",
        run_id="r",
        eval_id="e",
        datasource_item_id=index,
        datasource_item={},
        status=status,
        results=results,
        sample=sample,
        created_at=0,
    )


def test_summary_counts_items_criteria_and_usage() -> None:
    judged = {"sample": {"model": "judge"}}
    items = [
        _item(0, "pass", [{"name": "a", "passed": True}, {"name": "b", "passed": True, **judged}], 3),
        _item(1, "fail", [{"name": "a", "passed": False}, {"name": "b", "passed": True, **judged}], 4),
        _item(2, "error", [{"name": "a", "passed": False, "error": "x"}, {"name": "b", "passed": True, **judged}], 5),
    ]
    summary = report.summarize([{"name": "a"}, {"name": "b"}], items)
    assert summary["result_counts"] == {"total": 3, "passed": 1, "failed": 1, "errored": 1}
    assert summary["per_testing_criteria_results"] == [
        {"testing_criteria": "a", "passed": 1, "failed": 2},
        {"testing_criteria": "b", "passed": 3, "failed": 0},
    ]
    usage = {u["model_name"]: u for u in summary["per_model_usage"]}
    assert usage["m"]["invocation_count"] == 3 and usage["m"]["completion_tokens"] == 12
    assert usage["judge"]["invocation_count"] == 3 and usage["judge"]["total_tokens"] == 6
