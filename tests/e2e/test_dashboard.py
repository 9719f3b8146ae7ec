"""The dashboard in headless Chromium (Debian's package, driven by Playwright): the jobs list, a
running job's charts gaining points as it trains, and the playground answering side by side."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LiveServer
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
CHROMIUM = Path("/usr/bin/chromium")
TINY = "openft/tiny-chat"
POINTS = "+(document.querySelector('#loss-chart svg')?.dataset.points || 0)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; scripts/setup installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.base_url[:-3])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def running_job(live_server: LiveServer) -> str:
    """A tiny job long enough to be watched while it trains; returned once it has logged a step."""
    client = live_server.client()

    def upload(name: str) -> str:
        return client.files.create(file=(name, (ASSETS / name).read_bytes()), purpose="fine-tune").id

    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=upload("tiny_train.jsonl"),
        validation_file=upload("tiny_valid.jsonl"),
        seed=11,
        suffix="dash",
        hyperparameters={"n_epochs": 4},
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=5)):
            return job.id
        time.sleep(0.2)
    raise AssertionError(f"job {job.id} logged no step in 300 s")


def _wait_finished(client: OpenAI, job_id: str) -> Any:
    deadline = time.time() + 600
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish")


def test_jobs_list_shows_jobs_with_the_key_from_the_page(page: Any, running_job: str) -> None:
    page.goto("/")
    page.fill("#api-key", "sk-local")
    page.press("#api-key", "Enter")
    row = page.locator(f"tr[data-job-id='{running_job}']")
    row.wait_for()
    assert row.locator(".badge").inner_text() in ("running", "succeeded")
    assert TINY in row.inner_text() and "ago" in row.inner_text()
    assert page.evaluate("localStorage.getItem('openft.apiKey')") == "sk-local"
    row.locator("a").click()
    page.wait_for_url(f"**/jobs/{running_job}")


def test_running_job_chart_gains_points(
    page: Any, live_server: LiveServer, running_job: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client = live_server.client()
    page.goto(f"/jobs/{running_job}")
    page.wait_for_function(f"{POINTS} > 0")
    first = page.evaluate(POINTS)
    assert client.fine_tuning.jobs.retrieve(running_job).status == "running"
    page.wait_for_function(f"{POINTS} > {first}", timeout=120_000)  # polled, no reload

    job = _wait_finished(client, running_job)
    assert job.status == "succeeded", job.error
    metrics = [e for e in client.fine_tuning.jobs.list_events(running_job, limit=1000) if e.type == "metrics"]
    with_valid = sum(1 for e in metrics if e.data.get("valid_loss") is not None)
    with_full = sum(1 for e in metrics if e.data.get("full_valid_loss") is not None)
    # train + valid + full valid points once the page has caught up with the finished job.
    page.wait_for_function(f"{POINTS} === {len(metrics) + with_valid + with_full}", timeout=30_000)
    page.locator("#checkpoints tbody tr").first.wait_for()
    page.locator(".job-header .badge", has_text="succeeded").wait_for()
    assert page.locator("#accuracy-chart svg polyline").count() == 3
    assert "New fine-tuned model created" in page.locator("#events").inner_text()
    shots = tmp_path_factory.mktemp("screenshots")
    page.screenshot(path=str(shots / "job.png"), full_page=True)


def test_playground_answers_side_by_side(page: Any, live_server: LiveServer, running_job: str) -> None:
    client = live_server.client()
    job = _wait_finished(client, running_job)
    model = job.fine_tuned_model
    page.goto(f"/playground?model={model}")
    panes = page.locator(".pane")
    panes.nth(1).wait_for()
    assert [panes.nth(i).get_attribute("data-model") for i in range(2)] == [model, TINY]
    page.fill("#max-tokens", "8")
    page.fill("#prompt", "What is the capital of France?")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.msg.assistant.done').length === 2", timeout=240_000)
    assert page.locator(".msg.failed").count() == 0
    answers = [panes.nth(i).locator(".msg.assistant").inner_text() for i in range(2)]
    for name, shown in zip((model, TINY), answers, strict=True):
        expected = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8,
            temperature=0,
        )
        assert shown == (expected.choices[0].message.content or "(empty answer)")
