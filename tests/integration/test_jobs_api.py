"""/v1/fine_tuning/jobs through the official client, and file validation by a real worker."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai import OpenAI

from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import open_store

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"


def _upload(client: OpenAI, name: str) -> str:
    return client.files.create(file=(name, (ASSETS / name).read_bytes()), purpose="fine-tune").id


def _validate_pending(settings: Settings) -> None:
    worker = Worker(settings, open_store(settings.sqlalchemy_url))
    while worker.validate_next_job():
        pass


def test_create_job_has_every_field(client: OpenAI) -> None:
    train = _upload(client, "tiny_train.jsonl")
    job = client.fine_tuning.jobs.create(
        model=TINY, training_file=train, suffix="support", seed=7, metadata={"team": "a"}
    )
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.status == "validating_files" and job.seed == 7 and job.model == TINY
    assert job.fine_tuned_model is None and job.finished_at is None and job.trained_tokens is None
    assert job.error is None and job.result_files == [] and job.validation_file is None
    assert job.organization_id == "org-personal" and job.metadata == {"team": "a"}
    assert job.method is not None and job.method.type == "supervised"
    assert job.hyperparameters.n_epochs == "auto"
    assert (
        job.model_extra == {"user_provided_suffix": "support"}
        or getattr(job, "user_provided_suffix", None) == "support"
    )
    assert client.fine_tuning.jobs.retrieve(job.id).model_dump() == job.model_dump()
    events = list(client.fine_tuning.jobs.list_events(job.id))
    assert [e.message for e in events] == [f"Validating training file: {train}", f"Created fine-tuning job: {job.id}"]


def test_seed_is_generated_when_absent(client: OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "tiny_train.jsonl"))
    assert isinstance(job.seed, int) and 0 <= job.seed < 2**31


def test_validation_resolves_auto_hyperparameters(client: OpenAI, settings: Settings) -> None:
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=_upload(client, "tiny_train.jsonl"),
        validation_file=_upload(client, "tiny_valid.jsonl"),
        method={"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2}}},
    )
    _validate_pending(settings)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "queued"
    n = sum(1 for line in (ASSETS / "tiny_train.jsonl").read_text().splitlines() if line.strip())
    assert job.hyperparameters.n_epochs == min(25, 100 // n) and job.hyperparameters.batch_size == 2
    assert job.hyperparameters.learning_rate_multiplier == 1.0
    assert job.method.supervised.hyperparameters.n_epochs == job.hyperparameters.n_epochs  # type: ignore[union-attr]
    newest = next(iter(client.fine_tuning.jobs.list_events(job.id)))
    assert newest.message == "Files validated, moving job to queued state"


def test_broken_line_fails_the_job_naming_the_line(client: OpenAI, settings: Settings) -> None:
    job = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "broken_line7.jsonl"))
    _validate_pending(settings)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error is not None
    assert job.error.param == "training_file" and "line 7" in job.error.message.lower()
    assert job.finished_at is not None and job.fine_tuned_model is None
    assert next(iter(client.fine_tuning.jobs.list_events(job.id))).level == "error"


def test_too_few_examples_fails_like_openai(client: OpenAI, settings: Settings) -> None:
    lines = (ASSETS / "tiny_train.jsonl").read_text().splitlines()[:7]
    f = client.files.create(file=("few.jsonl", "\n".join(lines).encode()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=TINY, training_file=f.id)
    _validate_pending(settings)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.error is not None and job.error.code == "invalid_n_examples"
    assert job.error.message == "Training file has 7 example(s), but must have at least 10 examples"


def test_create_errors_use_the_envelope(client: OpenAI) -> None:
    train = _upload(client, "tiny_train.jsonl")
    with pytest.raises(openai.NotFoundError) as err:
        client.fine_tuning.jobs.create(model="no/such-model", training_file=train)
    assert err.value.code == "model_not_found" and err.value.param == "model"
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file="file-doesnotexist")
    assert err.value.param == "training_file"
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train, suffix="x" * 65)
    assert err.value.param == "suffix"
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train, metadata={f"k{i}": "v" for i in range(17)})
    assert err.value.param == "metadata"
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train, seed=-1)
    assert err.value.param == "seed"
    other = client.files.create(file=("notes.txt", b"x"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=other.id)
    assert err.value.code == "invalid_file_purpose"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")


def test_list_paginates_and_filters_by_metadata(client: OpenAI) -> None:
    train = _upload(client, "tiny_train.jsonl")
    jobs = [
        client.fine_tuning.jobs.create(model=TINY, training_file=train, metadata={"i": str(i % 2)}) for i in range(5)
    ]
    page = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == [jobs[4].id, jobs[3].id] and page.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=2)] == [j.id for j in reversed(jobs)]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"i": "1"})] == [jobs[3].id, jobs[1].id]
    assert [j.id for j in client.fine_tuning.jobs.list(after=jobs[1].id)] == [jobs[0].id]


def test_cancel_and_cancel_again(client: OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "tiny_train.jsonl"))
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.cancel(job.id)
    assert err.value.code == "invalid_job_state"
    assert next(iter(client.fine_tuning.jobs.list_events(job.id))).message == "Fine-tuning job cancelled"


def test_events_paginate_newest_first(client: OpenAI, settings: Settings) -> None:
    job = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "tiny_train.jsonl"))
    _validate_pending(settings)
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=1))  # auto-pagination, one per page
    assert [e.message for e in events][-1] == f"Created fine-tuning job: {job.id}"
    whole = client.fine_tuning.jobs.list_events(job.id, limit=100)
    assert [e.id for e in events] == [e.id for e in whole.data] and not whole.has_more
    assert len({e.id for e in events}) == len(events) >= 3
    assert all(e.id.startswith("ftevent-") and e.object == "fine_tuning.job.event" for e in events)
