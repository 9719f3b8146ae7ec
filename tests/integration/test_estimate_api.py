"""POST /v1/fine_tuning/jobs/estimate through the official client, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from openft.jobs import throughput
from openft.jobs.estimate import eval_tokens, throughput_cache_dir, throughput_key
from openft.jobs.memory_estimate import training_device
from openft.settings import Settings

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"


def _upload(client: OpenAI, name: str, content: bytes | None = None) -> str:
    data = content if content is not None else (ASSETS / name).read_bytes()
    return client.files.create(file=(name, data), purpose="fine-tune").id


def _estimate(client: OpenAI, **body: Any) -> dict[str, Any]:
    return client.post("/fine_tuning/jobs/estimate", body=body, cast_to=object)  # type: ignore[return-value]


def _known_throughput(settings: Settings, rate: float = 500.0, startup: float = 4.0) -> None:
    """A measured record, as a succeeded job leaves one, so no calibration runs."""
    key = throughput_key(settings, TINY, "supervised", "lora", training_device())
    record = throughput.Throughput(rate, startup, "previous_jobs", 0.0, "ftjob-earlier")
    throughput.write(throughput_cache_dir(settings), key, record)


def test_estimate_of_a_good_file(client: OpenAI, settings: Settings) -> None:
    _known_throughput(settings)
    train, valid = _upload(client, "tiny_train.jsonl"), _upload(client, "tiny_valid.jsonl")
    body = {"model": TINY, "training_file": train, "validation_file": valid, "method": {"type": "supervised"}}
    est = _estimate(client, **body)
    assert est["object"] == "fine_tuning.job.estimate" and est["model"] == TINY
    tf = est["training_file"]
    assert tf["id"] == train and tf["n_examples"] == 12 and tf["n_trained_examples"] == 12
    assert tf["n_tokens"] > 0 and tf["n_truncated"] == 0 and est["validation_file"]["id"] == valid
    hp = est["hyperparameters"]
    assert hp == {"batch_size": 1, "learning_rate_multiplier": 1.0, "n_epochs": 8}  # 100 // 12 examples
    assert est["method"]["supervised"]["hyperparameters"] == hp and est["training_type"] == "lora"
    assert est["n_steps"] == 8 * 12 and est["trained_tokens"] == 8 * tf["n_tokens"]
    assert est["trained_tokens_exact"] is True and est["fits"] is True and est["reason"] is None
    assert 0 < est["peak_memory_bytes"] <= est["memory_limit_bytes"]
    assert est["estimated_seconds_source"] == "previous_jobs" and est["tokens_per_second"] == 500.0
    vf = est["validation_file"]
    scored = eval_tokens(est["n_steps"], 8, vf["n_trained_examples"], vf["n_tokens"])
    assert 0 < scored and est["estimated_seconds"] == pytest.approx(
        4.0 + (est["trained_tokens"] + scored / 3) / 500.0, abs=0.1
    )
    assert client.fine_tuning.jobs.list().data == []  # nothing was created


def test_hyperparameters_given_are_kept(client: OpenAI, settings: Settings) -> None:
    _known_throughput(settings)
    train = _upload(client, "tiny_train.jsonl")
    est = _estimate(
        client,
        model=TINY,
        training_file=train,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 5}}},
    )
    assert est["hyperparameters"]["n_epochs"] == 2 and est["hyperparameters"]["batch_size"] == 5
    assert est["n_steps"] == 2 * 3  # ceil(12 / 5) steps an epoch


def test_bad_line_is_named(client: OpenAI) -> None:
    bad = _upload(client, "broken_line7.jsonl")
    with pytest.raises(openai.BadRequestError) as err:
        _estimate(client, model=TINY, training_file=bad)
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "training_file"
    assert "Line 7" in body["message"] and body["code"]


def test_create_checks_apply(client: OpenAI) -> None:
    train = _upload(client, "tiny_train.jsonl")
    with pytest.raises(openai.NotFoundError) as missing_model:
        _estimate(client, model="no-such/model", training_file=train)
    assert missing_model.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as missing_file:
        _estimate(client, model=TINY, training_file="file-doesnotexist")
    assert missing_file.value.code == "invalid_file"
    with pytest.raises(openai.BadRequestError) as unknown_field:
        _estimate(client, model=TINY, training_file=train, colour="blue")
    assert unknown_field.value.status_code == 400


def test_examples_over_the_context_are_counted_truncated(client: OpenAI, settings: Settings) -> None:
    _known_throughput(settings)
    long_answer = "word " * 400  # tiny-chat's tokenizer is byte-level: 2,000 tokens, its context is 1,024
    lines = [
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": long_answer}]})
        for i in range(10)
    ]
    train = _upload(client, "long.jsonl", ("\n".join(lines) + "\n").encode())
    est = _estimate(client, model=TINY, training_file=train)
    tf = est["training_file"]
    assert tf["n_truncated"] == 10 and tf["truncated_lines"] == list(range(1, 11))
    assert tf["n_tokens"] == 10 * 1024


def test_a_tiny_memory_limit_does_not_fit(client: OpenAI, settings: Settings, app: Any) -> None:
    _known_throughput(settings)
    app.state.settings.training_memory_limit_mb = 1
    train = _upload(client, "tiny_train.jsonl")
    est = _estimate(client, model=TINY, training_file=train)
    assert est["fits"] is False and est["memory_limit_bytes"] == 1024 * 1024
    assert "OPENFT_TRAINING_MEMORY_LIMIT_MB" in est["reason"] and "GiB" in est["reason"]


def test_in_openapi_document(client: OpenAI, http: Any) -> None:
    doc = http.get("/openapi.json").json()
    assert "post" in doc["paths"]["/v1/fine_tuning/jobs/estimate"]
    assert "FineTuningJobEstimate" in doc["components"]["schemas"]


def test_early_stopping_makes_trained_tokens_an_upper_bound(client: OpenAI, settings: Settings) -> None:
    _known_throughput(settings)
    train, valid = _upload(client, "tiny_train.jsonl"), _upload(client, "tiny_valid.jsonl")
    stopping = {"eval_every_steps": 2, "patience": 1, "min_delta": 0.0}
    method = {"type": "supervised", "supervised": {"openft": {"early_stopping": stopping}}}
    est = _estimate(client, model=TINY, training_file=train, validation_file=valid, method=method)
    assert est["trained_tokens_exact"] is False and est["trained_tokens"] == 8 * est["training_file"]["n_tokens"]
