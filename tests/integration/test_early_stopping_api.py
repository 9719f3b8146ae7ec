"""Early stopping's options at job creation, through the official client: kept on the job when valid, a
400 naming the parameter when not."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
EARLY_STOPPING = {"eval_every_steps": 4, "patience": 2, "min_delta": 0.01}


def upload_chat(client: OpenAI, n: int) -> str:
    line = {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}
    data = "".join(json.dumps(line) + "\n" for _ in range(n)).encode()
    return client.files.create(file=("chat.jsonl", data), purpose="fine-tune").id


def supervised(early_stopping: dict[str, Any]) -> dict[str, Any]:
    return {"type": "supervised", "supervised": {"openft": {"early_stopping": early_stopping}}}


def test_early_stopping_is_kept_on_the_job(client: OpenAI) -> None:
    file_id = upload_chat(client, 10)
    job = client.fine_tuning.jobs.create(
        model=TINY, training_file=file_id, validation_file=file_id, method=supervised(EARLY_STOPPING)
    )
    assert job.method.supervised is not None
    assert job.method.supervised.model_dump()["openft"]["early_stopping"] == EARLY_STOPPING
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.method.supervised is not None
    assert job.method.supervised.model_dump()["openft"]["early_stopping"] == EARLY_STOPPING
    assert job.model_extra is not None and job.model_extra.get("openft") is None  # nothing chosen yet


@pytest.mark.parametrize(
    ("early_stopping", "validation", "param"),
    [
        (EARLY_STOPPING, False, "validation_file"),
        ({"eval_every_steps": 4, "patience": 0}, True, "method.supervised.openft.early_stopping.patience"),
        ({"eval_every_steps": 0, "patience": 2}, True, "method.supervised.openft.early_stopping.eval_every_steps"),
        ({"patience": 2}, True, "method.supervised.openft.early_stopping.eval_every_steps"),
        ({**EARLY_STOPPING, "min_delta": -1}, True, "method.supervised.openft.early_stopping.min_delta"),
        ({**EARLY_STOPPING, "monitor": "accuracy"}, True, "method.supervised.openft.early_stopping.monitor"),
    ],
)
def test_bad_early_stopping_is_a_400_naming_the_parameter(
    client: OpenAI, early_stopping: dict[str, Any], validation: bool, param: str
) -> None:
    file_id = upload_chat(client, 10)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(
            model=TINY,
            training_file=file_id,
            validation_file=file_id if validation else openai.NOT_GIVEN,
            method=supervised(early_stopping),  # type: ignore[arg-type]
        )
    body = info.value.body
    assert info.value.status_code == 400
    assert isinstance(body, dict) and body.get("type") == "invalid_request_error" and body.get("param") == param
    assert client.fine_tuning.jobs.list().data == []  # nothing was created
