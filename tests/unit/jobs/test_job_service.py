"""JobService on the in-memory store: create, retrieve, list, cancel, pause and resume, with their events,
errors and webhook outbox rows."""

from __future__ import annotations

import io

import pytest

from memory_lifecycle import ORG, OTHER_ORG, chat_lines
from openft.errors import InvalidJobState, InvalidRequest, JobNotFound, ModelNotFound, RateLimitExceeded
from openft.files.service import FileService
from openft.jobs import status as st
from openft.jobs.service import JobService
from openft.jobs.webhooks import new_endpoint
from openft.store import InMemoryStore
from openft.types.fine_tuning.fine_tuning_job import JobCreateParams


def _create(jobs: JobService, training_file: str, **params: object) -> str:
    return jobs.create(ORG, JobCreateParams(model="openft/tiny-chat", training_file=training_file, **params)).id  # type: ignore[arg-type]


def _messages(jobs: JobService, job_id: str) -> list[str]:
    return [e.message for e in reversed(jobs.events(ORG, job_id, after=None, limit=100)[0])]


def test_create_stores_a_validating_job_with_its_first_events(jobs: JobService, training_file: str) -> None:
    job = jobs.create(
        ORG, JobCreateParams(model="openft/tiny-chat", training_file=training_file, suffix="s", metadata={"k": "v"})
    )
    assert (job.status, job.organization_id, job.project_id, job.metadata) == (
        st.VALIDATING,
        "org-a",
        "proj-a",
        {"k": "v"},
    )
    assert job.hyperparameters == {"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}
    assert job.model_name.startswith("ft:openft/tiny-chat:") and ":s:" in job.model_name
    assert 0 <= job.seed < 2**31 and job.fine_tuned_model is None
    assert jobs.get(ORG, job.id).id == job.id
    assert _messages(jobs, job.id) == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {training_file}",
    ]


def test_create_refuses_what_it_cannot_run(
    jobs: JobService, files: FileService, training_file: str, memory_store: InMemoryStore
) -> None:
    with pytest.raises(ModelNotFound):
        jobs.create(ORG, JobCreateParams(model="no/such-model", training_file=training_file))
    with pytest.raises(InvalidRequest) as missing:
        _create(jobs, training_file, validation_file="file-missing")
    assert missing.value.param == "validation_file"
    with pytest.raises(InvalidRequest) as foreign:
        jobs.create(OTHER_ORG, JobCreateParams(model="openft/tiny-chat", training_file=training_file))
    assert foreign.value.param == "training_file"
    batch = files.create(ORG, filename="b.jsonl", purpose="batch", content=io.BytesIO(chat_lines(1))).id
    with pytest.raises(InvalidRequest) as purpose:
        _create(jobs, batch)
    assert purpose.value.code == "invalid_file_purpose"
    assert memory_store.list_jobs(ORG.organization_id) == ([], False)


def test_an_organization_has_at_most_its_active_jobs(jobs: JobService, training_file: str) -> None:
    jobs.files.settings = jobs.files.settings.model_copy(update={"max_active_jobs_per_organization": 2})
    first = _create(jobs, training_file)
    _create(jobs, training_file)
    with pytest.raises(RateLimitExceeded):
        _create(jobs, training_file)
    jobs.cancel(ORG, first)
    _create(jobs, training_file)


def test_jobs_are_listed_newest_first_and_hidden_from_other_organizations(jobs: JobService, training_file: str) -> None:
    ids = [_create(jobs, training_file, metadata={"n": str(n % 2)}) for n in range(4)]
    page, more = jobs.list(ORG, after=None, limit=3, metadata=None)
    assert [j.id for j in page] == ids[::-1][:3] and more
    assert [j.id for j in jobs.list(ORG, after=page[-1].id, limit=3, metadata=None)[0]] == [ids[0]]
    assert [j.id for j in jobs.list(ORG, after=None, limit=10, metadata={"n": "1"})[0]] == [ids[3], ids[1]]
    assert jobs.list(OTHER_ORG, after=None, limit=10, metadata=None) == ([], False)
    with pytest.raises(JobNotFound):
        jobs.get(OTHER_ORG, ids[0])
    with pytest.raises(JobNotFound):
        jobs.get(ORG, "not-a-job-id")


def test_cancel_finishes_the_job_once_and_queues_its_webhook(
    jobs: JobService, training_file: str, memory_store: InMemoryStore
) -> None:
    endpoint = new_endpoint(ORG.organization_id, "https://hooks.example/x")
    memory_store.webhooks.add_endpoint(endpoint)
    job_id = _create(jobs, training_file)
    cancelled = jobs.cancel(ORG, job_id)
    assert cancelled.status == st.CANCELLED and cancelled.finished_at is not None
    assert _messages(jobs, job_id)[-1] == "Fine-tuning job cancelled"
    deliveries = memory_store.webhooks.list_deliveries(endpoint.id)
    assert [d.event_type for d in deliveries] == ["fine_tuning.job.cancelled"] and job_id in deliveries[0].payload
    with pytest.raises(InvalidJobState):
        jobs.cancel(ORG, job_id)
    with pytest.raises(JobNotFound):
        jobs.cancel(OTHER_ORG, job_id)
    assert len(memory_store.webhooks.list_deliveries(endpoint.id)) == 1


def test_pause_and_resume_move_a_queued_job_and_nothing_else(
    jobs: JobService, training_file: str, memory_store: InMemoryStore
) -> None:
    job_id = _create(jobs, training_file)
    with pytest.raises(InvalidJobState):
        jobs.pause(ORG, job_id)  # still validating its files
    with pytest.raises(InvalidJobState):
        jobs.resume(ORG, job_id)
    memory_store.claim_next_job("w", st.VALIDATING, to_status=st.QUEUED)  # as if validated
    assert jobs.pause(ORG, job_id).status == st.PAUSED
    assert jobs.resume(ORG, job_id).status == st.QUEUED
    with pytest.raises(InvalidJobState):
        jobs.resume(ORG, job_id)
    assert _messages(jobs, job_id)[-2:] == ["Fine-tuning job paused", "Fine-tuning job resumed"]


def test_events_and_checkpoints_are_read_only_for_the_owner(jobs: JobService, training_file: str) -> None:
    job_id = _create(jobs, training_file)
    assert len(jobs.events(ORG, job_id, after=None, limit=1)[0]) == 1
    assert jobs.checkpoints(ORG, job_id, after=None, limit=10) == ([], False)
    with pytest.raises(JobNotFound):
        jobs.events(OTHER_ORG, job_id, after=None, limit=10)
    with pytest.raises(JobNotFound):
        jobs.checkpoints(OTHER_ORG, job_id, after=None, limit=10)
