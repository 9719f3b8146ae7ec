"""DPO jobs and openft's training options through the official client, validated by a real worker."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import open_store

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"


def upload_pairs(client: OpenAI, n: int) -> str:
    line = {
        "input": {"messages": [{"role": "user", "content": "Capital of France?"}]},
        "preferred_output": [{"role": "assistant", "content": "Paris."}],
        "non_preferred_output": [{"role": "assistant", "content": "London."}],
    }
    data = "".join(json.dumps(line) + "\n" for _ in range(n)).encode()
    return client.files.create(file=("prefs.jsonl", data), purpose="fine-tune").id


def validate_pending(settings: Settings) -> None:
    worker = Worker(settings, open_store(settings.sqlalchemy_url))
    while worker.validate_next_job():
        pass


def test_dpo_job_resolves_beta_and_keeps_training_options(client: OpenAI, settings: Settings) -> None:
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=upload_pairs(client, 20),
        method={
            "type": "dpo",
            "dpo": {"hyperparameters": {"batch_size": 4}, "openft": {"lora_rank": 8, "target_modules": ["q_proj"]}},
        },
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == "auto"
    validate_pending(settings)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "queued", job.error
    hyper = job.method.dpo.hyperparameters
    assert (hyper.beta, hyper.batch_size, hyper.n_epochs, hyper.learning_rate_multiplier) == (0.1, 4, 5, 1.0)
    assert job.hyperparameters.model_dump(exclude_none=True) == {
        "batch_size": 4,
        "learning_rate_multiplier": 1.0,
        "n_epochs": 5,
    }
    assert job.method.dpo.model_dump(exclude_none=True)["openft"] == {
        "training_type": "lora",
        "lora_rank": 8,
        "target_modules": ["q_proj"],
    }


def test_a_chat_file_fails_a_dpo_job_naming_the_line(client: OpenAI, settings: Settings) -> None:
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    data = "".join(json.dumps(chat) + "\n" for _ in range(12)).encode()
    file_id = client.files.create(file=("chat.jsonl", data), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=file_id, method={"type": "dpo"})
    validate_pending(settings)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "invalid_dpo_input" and "Line 1" in job.error.message


@pytest.mark.parametrize(
    "method",
    [
        {"type": "supervised", "supervised": {"openft": {"training_type": "full", "lora_rank": 8}}},
        {"type": "supervised", "supervised": {"openft": {"training_type": "partial"}}},
        {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}},
    ],
)
def test_bad_options_are_a_400_in_openai_envelope(client: OpenAI, method: dict[str, object]) -> None:
    file_id = upload_pairs(client, 10)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(model=TINY, training_file=file_id, method=method)  # type: ignore[arg-type]
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict) and body.get("type") == "invalid_request_error"
