"""Evals against a live server with the official client: train tiny-chat to give an answer (to half of
the eval's questions, and to its judge's prompt), then run one eval (string_check, text_similarity,
python and label_model criteria over a 40-item JSONL) on the base model and on the fine-tuned one;
the fine-tuned run passes more, and its report_url opens the dashboard page that lists its output
items (headless Chromium)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LiveServer
from openai import OpenAI

from openft.graders.judge import label_instruction

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]  # trains, then two runs
ASSETS = Path(__file__).parents[1] / "assets"
CHROMIUM = Path("/usr/bin/chromium")
TINY = "openft/tiny-chat"
ANSWER = "Paris."
QUESTIONS = [
    "What is the capital of France?",
    "Which city is the French capital?",
    "Name the capital of France.",
    "Where does the French government sit?",
    "Capital of France?",
    "Tell me France's capital.",
    "What city is France's capital?",
    "France: what is its capital?",
]
ITEMS = [
    {"question": f"{QUESTIONS[i % len(QUESTIONS)]} ({i})", "answer": ANSWER, "city": "Paris", "country": "France"}
    for i in range(40)
]
CRITERIA: list[dict[str, Any]] = [
    {
        "type": "string_check",
        "name": "names the city",
        "input": "{{sample.output_text}}",
        "reference": "{{item.city}}",
        "operation": "like",
    },
    {
        "type": "text_similarity",
        "name": "close to the answer",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.9,
    },
    {
        "type": "python",
        "name": "only the city",
        "source": "def grade(sample, item):\n    return float(sample['output_text'].strip(' .') == item['city'])\n",
        "pass_threshold": 1.0,
    },
]
DETERMINISTIC = ("names the city", "close to the answer", "only the city")


def judge_criterion(judge: str) -> dict[str, Any]:
    """A label_model criterion. Models small enough for this machine cannot judge (SmolLM2-135M answers
    "No." to every question put this way), so the judge is the fine-tuned model, trained to give its one
    answer to the judge's prompt too: the answer names the passing label, which makes this criterion a
    check of the label_model path (the judge is served, its reply is parsed into a label,
    passing_labels decide, its tokens are counted), not of judgement."""
    return {
        "type": "label_model",
        "name": "judge",
        "model": judge,
        "input": [{"role": "user", "content": "Which city does this name? {{sample.output_text}}"}],
        "labels": ["Paris", "London"],
        "passing_labels": ["Paris"],
    }


def _wait(fetch: Any, done: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what} did not finish in {timeout} s"
        time.sleep(0.5)


def training_lines() -> bytes:
    """What the fine-tuned model learns: to give ANSWER to the eval's questions, and to the judge's prompt
    (whatever sample it shows), so that it both passes the eval and names the passing label as a judge."""
    judge = judge_criterion("")
    instruction = label_instruction(judge["labels"])
    shown = ["", "\n" * 16, ANSWER, "Paris is the.", "Hello there.", "xq zv", "France", "capital"]
    chats = [[{"role": "user", "content": item["question"]}] for item in ITEMS[::2]] + [
        [
            {"role": "system", "content": instruction},
            {"role": "user", "content": judge["input"][0]["content"].replace("{{sample.output_text}}", text)},
        ]
        for text in shown
    ]
    return "".join(
        json.dumps({"messages": [*chat, {"role": "assistant", "content": ANSWER}]}) + "\n" for chat in chats
    ).encode()


@pytest.fixture(scope="module")
def fine_tuned(live_server: LiveServer) -> str:
    client = live_server.client()
    training = client.files.create(file=("train.jsonl", training_lines()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=TINY, training_file=training.id, seed=3, hyperparameters={"n_epochs": 4})
    job = _wait(
        lambda: client.fine_tuning.jobs.retrieve(job.id),
        lambda j: j.status in ("succeeded", "failed", "cancelled"),
        900,
        "the fine-tuning job",
    )
    assert job.status == "succeeded", job.error
    return str(job.fine_tuned_model)


@pytest.fixture(scope="module")
def compared(live_server: LiveServer, fine_tuned: str) -> dict[str, Any]:
    """One eval, and a completed completions run of it on the base model and on the fine-tuned one."""
    client = live_server.client()
    jsonl = "".join(json.dumps({"item": item}) + "\n" for item in ITEMS).encode()
    items_file = client.files.create(file=("capitals.jsonl", jsonl), purpose="evals")
    ev = client.evals.create(
        name="capital of France",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {k: {"type": "string"} for k in ITEMS[0]},
                "required": list(ITEMS[0]),
            },
            "include_sample_schema": True,
        },
        testing_criteria=[*CRITERIA, judge_criterion(fine_tuned)],  # type: ignore[arg-type]
    )
    runs = {}
    for model in (TINY, fine_tuned):
        runs[model] = client.evals.runs.create(
            ev.id,
            name=model,
            data_source={
                "type": "completions",
                "model": model,
                "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
                "sampling_params": {"temperature": 0, "max_completion_tokens": 16, "seed": 1},
                "source": {"type": "file_id", "id": items_file.id},
            },
        )
    finished = {
        model: _wait(
            lambda run=run: client.evals.runs.retrieve(run.id, eval_id=ev.id),
            lambda r: r.status not in ("queued", "in_progress"),
            900,
            f"the run on {model}",
        )
        for model, run in runs.items()
    }
    return {"eval": ev, "base": finished[TINY], "tuned": finished[fine_tuned], "model": fine_tuned}


def _items(client: OpenAI, run: Any, **filters: Any) -> list[Any]:
    return list(client.evals.runs.output_items.list(run.id, eval_id=run.eval_id, limit=100, **filters))


def test_the_fine_tuned_model_passes_more(live_server: LiveServer, compared: dict[str, Any]) -> None:
    client = live_server.client()
    base, tuned = compared["base"], compared["tuned"]
    for run in (base, tuned):
        assert run.status == "completed", run.error
        counts = run.result_counts
        assert counts.total == len(ITEMS) == counts.passed + counts.failed + counts.errored
        items = _items(client, run)
        assert sorted(i.datasource_item_id for i in items) == list(range(len(ITEMS)))
        for item in items:
            assert item.datasource_item == ITEMS[item.datasource_item_id]
            assert item.sample.input[0].content == ITEMS[item.datasource_item_id]["question"]
        per = {r.testing_criteria: r for r in run.per_testing_criteria_results}
        assert set(per) == {c["name"] for c in CRITERIA} | {"judge"}
        for name in per:
            assert per[name].passed + per[name].failed == counts.total - sum(
                1 for i in items if not any(r.name == name for r in i.results)
            )
        assert len(_items(client, run, status="pass")) == counts.passed
        assert len(_items(client, run, status="fail")) == counts.failed
    base_per = {r.testing_criteria: r.passed for r in base.per_testing_criteria_results}
    tuned_per = {r.testing_criteria: r.passed for r in tuned.per_testing_criteria_results}
    for name in DETERMINISTIC:
        assert tuned_per[name] > base_per[name], (name, base_per, tuned_per)
    assert tuned_per["names the city"] == len(ITEMS)
    assert tuned.result_counts.passed > base.result_counts.passed


def test_usage_counts_the_answers_and_the_judge(live_server: LiveServer, compared: dict[str, Any]) -> None:
    client = live_server.client()
    tuned = compared["tuned"]
    usage = {u.run_model_name: u for u in tuned.per_model_usage}
    items = _items(client, tuned)
    judged = [r for i in items for r in i.results if r.name == "judge" and r.sample]
    assert len(judged) == len(ITEMS)
    # The fine-tuned model both answered and judged every item.
    answered = usage[compared["model"]]
    assert answered.invocation_count == 2 * len(ITEMS)
    judge_tokens = sum(r.sample["usage"]["completion_tokens"] for r in judged)
    assert answered.completion_tokens == sum(i.sample.usage.completion_tokens for i in items) + judge_tokens
    for result in judged:
        assert result.passed == (getattr(result, "label", None) == "Paris")
    base_usage = {u.run_model_name: u.invocation_count for u in compared["base"].per_model_usage}
    assert base_usage == {TINY: len(ITEMS), compared["model"]: len(ITEMS)}


def test_report_url_lists_the_output_items(live_server: LiveServer, compared: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    tuned, base = compared["tuned"], compared["base"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base.report_url)
        page.wait_for_function(f"document.querySelectorAll('#output-items tr[data-item-id]').length === {len(ITEMS)}")
        statuses = page.eval_on_selector_all(
            "#output-items tr[data-item-id]", "rows => rows.map(r => r.dataset.status)"
        )
        assert statuses == sorted(statuses, key=["fail", "error", "pass"].index)  # failed first
        assert statuses.count("pass") == base.result_counts.passed
        assert "names the city" in page.locator("#output-items").inner_text()
        page.goto("/evals".join(tuned.report_url.rsplit(f"/evals/{tuned.eval_id}/runs/{tuned.id}", 1)))
        table = page.locator(f"table[data-eval-id='{tuned.eval_id}']")
        table.wait_for()
        assert table.locator(f"th[data-run-id='{tuned.id}']").count() == 1
        assert table.locator(f"th[data-run-id='{base.id}']").count() == 1
        browser.close()
    assert errors == [], errors


def test_compare_with_base_from_the_job_page(live_server: LiveServer, compared: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    client = live_server.client()
    ev = compared["eval"]
    job = next(j for j in client.fine_tuning.jobs.list() if j.fine_tuned_model == compared["model"])
    before = {r.id for r in client.evals.runs.list(ev.id)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(base_url=live_server.base_url[:-3])
        page.goto(f"/jobs/{job.id}")
        page.wait_for_function("!document.querySelector('#compare-run').disabled")
        page.select_option("#compare-eval", ev.id)
        page.click("#compare-run")
        page.wait_for_url("**/evals")
        page.locator(f"table[data-eval-id='{ev.id}']").wait_for()
        browser.close()
    new = [r for r in client.evals.runs.list(ev.id) if r.id not in before]
    assert sorted(r.model for r in new) == sorted([compared["model"], TINY])
    for run in new:  # the same items and prompt as the eval's latest completions run
        assert run.data_source.source.id == compared["tuned"].data_source.source.id  # type: ignore[union-attr]
        client.evals.runs.cancel(run.id, eval_id=ev.id)
