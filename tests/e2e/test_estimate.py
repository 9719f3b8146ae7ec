"""Job estimates against a live server: a bad line named, the estimated trained tokens equal to the job's,
a calibration then the job's own throughput, a job too large for the memory limit, the CLI, and the
summary a succeeded job's events end with."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from e2e_support import LiveServer, start_live_server, stop_live_server
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"
MEMORY_LIMIT_MB = 2048
CHROMIUM = Path("/usr/bin/chromium")
LARGE = "acme/llama-7b-config-only"
METHOD = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 2}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LiveServer]:
    """A live server whose training processes may use 2 GiB: tiny-chat with LoRA fits, a 7B model does not."""
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(models_dir)
    live = start_live_server(
        home,
        env={"OPENFT_TRAINING_MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB), "OPENFT_ESTIMATE_CALIBRATION_SECONDS": "120"},
    )
    yield live
    stop_live_server(live)


def _upload(client: OpenAI, name: str) -> str:
    return client.files.create(file=(name, (ASSETS / name).read_bytes()), purpose="fine-tune").id


def _estimate(client: OpenAI, **body: Any) -> dict[str, Any]:
    return client.post("/fine_tuning/jobs/estimate", body=body, cast_to=object)  # type: ignore[return-value]


def _wait(client: OpenAI, job_id: str, timeout: float = 300) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def test_a_bad_line_7_is_named(server: LiveServer) -> None:
    client = server.client()
    bad = _upload(client, "broken_line7.jsonl")
    with pytest.raises(openai.BadRequestError) as err:
        _estimate(client, model=TINY, training_file=bad)
    assert isinstance(err.value.body, dict) and "Line 7" in err.value.body["message"]
    assert err.value.body["param"] == "training_file"


@pytest.fixture(scope="module")
def trained(server: LiveServer) -> tuple[dict[str, Any], Any]:
    """The estimate of a job on a fresh server (a calibration), then that job, run to its end."""
    client = server.client()
    train, valid = _upload(client, "tiny_train.jsonl"), _upload(client, "tiny_valid.jsonl")
    first = _estimate(client, model=TINY, training_file=train, validation_file=valid, method=METHOD)
    job = client.fine_tuning.jobs.create(model=TINY, training_file=train, validation_file=valid, method=METHOD, seed=3)
    job = _wait(client, job.id)
    assert job.status == "succeeded", job.error
    return first, job


def test_estimated_tokens_are_the_jobs_trained_tokens(trained: tuple[dict[str, Any], Any]) -> None:
    first, job = trained
    assert first["fits"] is True and first["memory_limit_bytes"] == MEMORY_LIMIT_MB * 1024 * 1024
    assert first["estimated_seconds_source"] == "calibration" and first["estimated_seconds"] > 0
    assert first["n_steps"] == 3 * 6
    assert job.trained_tokens == first["trained_tokens"]


def test_events_state_the_estimate_and_end_with_what_the_run_learned(
    server: LiveServer, trained: tuple[dict[str, Any], Any]
) -> None:
    first, job = trained
    events = list(reversed(list(server.client().fine_tuning.jobs.list_events(job.id, limit=200))))
    messages = [e.message for e in events if e.type == "message"]
    estimate = next(i for i, m in enumerate(messages) if m.startswith("Estimate: "))
    assert messages.index("Fine-tuning job started") < estimate, messages
    assert messages[estimate].startswith(f"Estimate: {first['trained_tokens']:,} trained tokens in 18 steps")
    summary = next(e for e in events if e.message.startswith("Run summary: "))
    assert "final training loss" in summary.message and "final validation loss" in summary.message
    assert "validation loss rose in the last epoch" in summary.message or "fell in the last epoch" in summary.message
    assert summary.data["best_checkpoint"].startswith(f"{job.fine_tuned_model}:ckpt-step-")
    assert f"at {summary.data['best_checkpoint']}" in summary.message
    ran = next(e for e in events if e.message.startswith("Ran "))
    assert ran.data["trained_tokens"] == job.trained_tokens and ran.data["seconds"] > 0
    assert ran.data["estimate"]["trained_tokens"] == job.trained_tokens
    closing = [f"New fine-tuned model created: {job.fine_tuned_model}", "The job has successfully completed"]
    assert messages[-2:] == closing


def test_the_next_estimate_uses_the_jobs_throughput(server: LiveServer, trained: tuple[dict[str, Any], Any]) -> None:
    _, job = trained
    client = server.client()
    again = _estimate(
        client, model=TINY, training_file=job.training_file, validation_file=job.validation_file, method=METHOD
    )
    assert again["estimated_seconds_source"] == "previous_jobs"  # this job's throughput, not the calibration's
    assert again["trained_tokens"] == job.trained_tokens


def test_a_job_continuing_a_fine_tuned_model_is_estimated_on_its_base(
    server: LiveServer, trained: tuple[dict[str, Any], Any]
) -> None:
    _, job = trained
    est = _estimate(server.client(), model=job.fine_tuned_model, training_file=job.training_file, method=METHOD)
    assert est["model"] == TINY and est["trained_tokens"] > 0  # the create's lineage checks passed


def test_export_downloads_the_adapter(server: LiveServer, trained: tuple[dict[str, Any], Any]) -> None:
    _, job = trained
    url = f"{server.base_url}/fine_tuning/jobs/{job.id}/export"
    response = httpx.get(url, params={"format": "peft"}, headers={"Authorization": "Bearer sk-local"}, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="{job.id}-peft.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    missing = httpx.get(f"{server.base_url}/fine_tuning/jobs/ftjob-nosuchjob/export", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_export_of_an_unfinished_job_is_refused(server: LiveServer) -> None:
    client = server.client()
    failed = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "broken_line7.jsonl"))
    assert _wait(client, failed.id).status == "failed"
    response = httpx.get(f"{server.base_url}/fine_tuning/jobs/{failed.id}/export", timeout=30)
    assert response.status_code == 400 and "only a succeeded job" in response.json()["error"]["message"]


def _register_large_model(server: LiveServer, models_dir: Path) -> None:
    """A 7B Llama's config with tiny-chat's tokenizer: enough for an estimate, which loads no weights."""
    directory = server.home / "large-model"
    directory.mkdir()
    tokenizer = models_dir / ".tokenizers" / "openft--tiny-chat"
    if not tokenizer.is_dir():
        tokenizer = models_dir / "openft--tiny-chat"
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (tokenizer / name).exists():
            shutil.copy(tokenizer / name, directory / name)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
              "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
              "tie_word_embeddings": False}  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "OPENFT_HOME": str(server.home)}
    subprocess.run([sys.executable, "-m", "openft", "models", "add", LARGE, str(directory)], env=env, check=True)


def test_a_full_fine_tune_of_a_large_model_does_not_fit(server: LiveServer, models_dir: Path) -> None:
    _register_large_model(server, models_dir)
    client = server.client()
    train = _upload(client, "tiny_train.jsonl")
    method = {"type": "supervised", "supervised": {"openft": {"training_type": "full"}}}
    est = _estimate(client, model=LARGE, training_file=train, method=method)
    assert est["fits"] is False and est["training_type"] == "full"
    assert est["peak_memory_bytes"] > 100 * 1024**3  # 16 bytes a parameter for 6.7B parameters
    assert "Full fine-tuning of acme/llama-7b-config-only needs about" in est["reason"]
    assert "OPENFT_TRAINING_MEMORY_LIMIT_MB" in est["reason"] and "use LoRA" in est["reason"]


def test_cli_prints_the_estimate(server: LiveServer) -> None:
    client = server.client()
    train = _upload(client, "tiny_train.jsonl")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openft",
            "jobs",
            "estimate",
            TINY,
            train,
            "--n-epochs",
            "2",
            "--base-url",
            server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"training file {train}: 12 examples" in result.stdout
    assert "hyperparameters: batch_size=1, learning_rate_multiplier=1.0, n_epochs=2" in result.stdout
    assert "fits" in result.stdout and "time: about" in result.stdout
    bad = _upload(client, "broken_line7.jsonl")
    refused = subprocess.run(
        [sys.executable, "-m", "openft", "jobs", "estimate", TINY, bad, "--base-url", server.base_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "Line 7" in refused.stderr and "Traceback" not in refused.stderr


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; scripts/setup installs Debian's chromium package")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


def _page(browser: Any, live: LiveServer) -> Any:
    page = browser.new_context(base_url=live.base_url[:-3], accept_downloads=True).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    return page


def test_dashboard_shows_a_jobs_estimate_and_exports_its_model(
    browser: Any, server: LiveServer, trained: tuple[dict[str, Any], Any], tmp_path: Path
) -> None:
    _, job = trained
    page = _page(browser, server)
    page.goto(f"/jobs/{job.id}")
    page.locator("#estimate table").wait_for()
    shown = page.locator("#estimate").inner_text()
    assert f"{job.trained_tokens:,}" in shown and "fits" in shown and "GiB" in shown
    with page.expect_download(timeout=300_000) as download:
        page.click("#export-peft")
    path = tmp_path / "export.tar.gz"
    download.value.save_as(path)
    with tarfile.open(path, mode="r:gz") as tar:
        assert "adapter_config.json" in {Path(n).name for n in tar.getnames()}
    assert page.errors == []


def test_dashboard_estimates_a_job_before_it_trains(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> None:
    home = tmp_path_factory.mktemp("home-no-worker")
    (home / "models").symlink_to(models_dir)
    live = start_live_server(home, "--no-worker", env={"OPENFT_ESTIMATE_CALIBRATION_SECONDS": "0"})
    try:
        client = live.client()
        job = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "tiny_train.jsonl"))
        page = _page(browser, live)
        page.goto(f"/jobs/{job.id}")
        page.locator("#estimate table").wait_for()
        shown = page.locator("#estimate").inner_text()
        assert client.fine_tuning.jobs.retrieve(job.id).status == "validating_files"  # no worker: never trains
        assert "12 of 12 trained on" in shown and "unknown (no throughput measured here yet)" in shown
        assert page.locator("#export-peft").count() == 0 and page.errors == []
    finally:
        stop_live_server(live)
