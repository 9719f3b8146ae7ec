"""string_check and text_similarity graders, templates, and the sample namespace."""

from __future__ import annotations

from typing import Any

import pytest

from openft.graders import GraderContext, make_sample, parse_grader, run_grader, similarity
from openft.graders.template import TemplateError, render

ITEM = {"answer": "Paris", "nested": {"list": [{"name": "x"}, {"name": "y"}]}}


def grade(grader: dict[str, Any], output: str, item: dict[str, Any] | None = None) -> Any:
    return run_grader(parse_grader(grader), make_sample(output), ITEM if item is None else item, GraderContext())


def string_check(operation: str, reference: str = "{{item.answer}}") -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "check",
        "input": "{{sample.output_text}}",
        "reference": reference,
        "operation": operation,
    }


@pytest.mark.parametrize(
    ("operation", "output", "reward"),
    [
        ("eq", "Paris", 1.0),
        ("eq", "paris", 0.0),
        ("ne", "Lyon", 1.0),
        ("ne", "Paris", 0.0),
        ("neq", "Lyon", 1.0),
        ("like", "It is Paris.", 1.0),
        ("like", "It is paris.", 0.0),
        ("ilike", "It is PARIS.", 1.0),
        ("ilike", "It is Lyon.", 0.0),
    ],
)
def test_string_check_operations(operation: str, output: str, reward: float) -> None:
    result = grade(string_check(operation), output)
    assert result.reward == reward
    assert not result.failed


def test_templates_reach_nested_item_values_and_output_json() -> None:
    sample = make_sample('{"city": "Paris", "scores": [1, 2]}')
    namespaces_item = ITEM
    assert render("{{ item.nested.list[1].name }}", namespaces_item, sample) == "y"
    assert render("{{sample.output_json.city}}-{{sample.output_json.scores}}", ITEM, sample) == "Paris-[1, 2]"
    assert render("{{sample.choices[0].message.content}}", ITEM, make_sample("hi")) == "hi"
    assert make_sample("not json")["output_json"] is None


def test_a_missing_variable_gives_zero_and_the_invalid_variable_flag() -> None:
    result = grade(string_check("eq", reference="{{item.nope}}"), "Paris")
    assert result.reward == 0.0
    assert result.errors["invalid_variable_error"] is True
    with pytest.raises(TemplateError):
        render("{{ secrets.key }}", ITEM, None)


def similarity_grader(metric: str) -> dict[str, Any]:
    return {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": metric,
    }


METRICS = ["fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"]


@pytest.mark.parametrize("metric", METRICS)
def test_every_metric_is_one_for_identical_text_and_lower_for_a_paraphrase(metric: str) -> None:
    item = {"reference": "the quick brown fox jumps over the lazy dog"}
    same = grade(similarity_grader(metric), "the quick brown fox jumps over the lazy dog", item).reward
    close = grade(similarity_grader(metric), "the quick brown fox jumps over a lazy dog", item).reward
    unrelated = grade(similarity_grader(metric), "completely different words here", item).reward
    # METEOR keeps a small fragmentation penalty even for identical text (0.5 * (1/9)^3 here), as NLTK's does.
    assert same == pytest.approx(1.0, abs=1e-3)
    assert 0.0 < close < 1.0
    assert unrelated < close <= same


def test_metric_values_match_hand_computed_ones() -> None:
    # rouge_1: 5 common unigrams of 6 and 6 -> F1 5/6; rouge_l: LCS 5 -> 5/6.
    assert similarity.rouge_n("a b c d e f", "a b c d e g", 1) == pytest.approx(5 / 6)
    assert similarity.rouge_l("a b c d e f", "a c b d e f") == pytest.approx(5 / 6)
    # gleu: n-grams n=1..4 of two 3-word strings sharing "a b": matches 2+1=3, total 3+2+1=6.
    assert similarity.gleu("a b c", "a b d") == pytest.approx(0.5)
    # bleu of a 4-gram-identical candidate is 1; a shorter candidate pays the brevity penalty.
    assert similarity.bleu("a b c d", "a b c d") == pytest.approx(1.0)
    assert similarity.bleu("a b c d", "a b c d e f") < 1.0
    assert similarity.fuzzy_match("kitten", "sitting") == pytest.approx(2 * 4 / 13)


def test_cosine_without_an_embedding_model_is_an_error_not_a_crash() -> None:
    result = grade(similarity_grader("cosine"), "hello", {"reference": "hello"})
    assert result.reward == 0.0
    assert result.errors["other_error"] is True
    assert "embedding" in result.scores["error"]


def test_cosine_with_an_embedder() -> None:
    vectors = {"cat": [1.0, 0.0], "kitten": [1.0, 1.0]}
    context = GraderContext(embedder=lambda texts: [vectors[t] for t in texts])
    result = run_grader(parse_grader(similarity_grader("cosine")), make_sample("cat"), {"reference": "kitten"}, context)
    assert result.reward == pytest.approx(2**-0.5)
