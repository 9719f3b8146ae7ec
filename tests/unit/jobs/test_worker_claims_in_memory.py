"""The worker on the in-memory store, its training processes scripted: claims, every status transition of
a job's life (validating, queued, running, succeeded, failed, cancelled, paused), and the writes in between."""

from __future__ import annotations

import io

from memory_lifecycle import ORG, ScriptedExecutor, ScriptedHandle
from openft.files.service import FileService
from openft.jobs import status as st
from openft.jobs.service import JobService
from openft.jobs.transitions import transition
from openft.jobs.webhooks import new_endpoint
from openft.jobs.worker import Worker
from openft.store import InMemoryStore
from openft.types.fine_tuning.fine_tuning_job import JobCreateParams

METRICS = {"kind": "metrics", "step": 1, "total_steps": 2, "train_loss": 1.5, "elapsed_seconds": 1.0}
CHECKPOINT = {"kind": "checkpoint", "step": 2, "path": "checkpoints/step-2", "metrics": {"train_loss": 1.0}}
RESULT = {"kind": "result", "adapter_path": "adapter", "results_csv": "results.csv", "trained_tokens": 321}


def _create(jobs: JobService, training_file: str) -> str:
    return jobs.create(ORG, JobCreateParams(model="openft/tiny-chat", training_file=training_file)).id


def _messages(store: InMemoryStore, job_id: str) -> list[str]:
    return [e.message for e in reversed(store.list_events(job_id, limit=100)[0])]


def _queued_job(jobs: JobService, training_file: str, worker: Worker) -> str:
    """A job as its validation leaves it (queued, concrete hyperparameters, released), without validating:
    that step is tested on its own, and its job estimate needs the model's tokenizer."""
    job_id = _create(jobs, training_file)
    claimed = worker.store.claim_next_job("validating-worker", st.VALIDATING)
    assert claimed is not None and claimed.id == job_id
    hyper = {"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.0}
    method = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    moved = transition(
        worker.store, job_id, st.QUEUED, expect=st.VALIDATING, worker_id=None, hyperparameters=hyper, method=method
    )
    assert moved
    return job_id


def test_validation_claims_the_job_resolves_auto_values_and_queues_it(
    jobs: JobService, training_file: str, worker: Worker, memory_store: InMemoryStore
) -> None:
    job_id = _create(jobs, training_file)
    assert worker.validate_next_job()
    job = memory_store.get_job(job_id)
    assert (job.status, job.worker_id) == (st.QUEUED, None)
    assert all(value != "auto" for value in job.hyperparameters.values())
    assert job.method["supervised"]["hyperparameters"]["n_epochs"] == job.hyperparameters["n_epochs"]
    assert _messages(memory_store, job_id)[-1] == "Files validated, moving job to queued state"
    assert not worker.validate_next_job()  # nothing left to validate


def test_a_bad_training_file_fails_the_job_naming_its_line(
    jobs: JobService, files: FileService, worker: Worker, memory_store: InMemoryStore
) -> None:
    bad = b'{"messages": [{"role": "user", "content": "no answer"}]}\n' * 12
    file_id = files.create(ORG, filename="bad.jsonl", purpose="fine-tune", content=io.BytesIO(bad)).id
    job_id = _create(jobs, file_id)
    assert worker.validate_next_job()
    job = memory_store.get_job(job_id)
    assert job.status == st.FAILED and job.error is not None and job.error["param"] == "training_file"
    assert "line 1" in job.error["message"].lower() and job.finished_at is not None


def test_a_job_trains_to_success_with_its_events_checkpoint_and_results(
    jobs: JobService,
    training_file: str,
    worker: Worker,
    executor: ScriptedExecutor,
    memory_store: InMemoryStore,
) -> None:
    endpoint = new_endpoint(ORG.organization_id, "https://hooks.example/x")
    memory_store.webhooks.add_endpoint(endpoint)
    job_id = _queued_job(jobs, training_file, worker)
    executor.handles.append(ScriptedHandle([METRICS, CHECKPOINT, RESULT]))
    assert worker.start_next_job()
    running = memory_store.get_job(job_id)
    assert (running.status, running.worker_id, running.started_at is not None) == (st.RUNNING, worker.worker_id, True)
    launched_job, spec, _ = executor.launched[0]
    assert launched_job.id == job_id and spec["n_epochs"] == running.hyperparameters["n_epochs"]
    assert worker.pump_running()
    job = memory_store.get_job(job_id)
    assert (job.status, job.fine_tuned_model, job.trained_tokens) == (st.SUCCEEDED, job.model_name, 321)
    assert job.result_files and memory_store.get_file(job.result_files[0]).purpose == "fine-tune-results"
    assert [c.step_number for c in memory_store.list_checkpoints(job_id)[0]] == [2]
    messages = _messages(memory_store, job_id)
    assert "Fine-tuning job started" in messages and "Step 1/2: training loss=1.50" in messages
    assert messages[-1] == "The job has successfully completed"
    assert [d.event_type for d in memory_store.webhooks.list_deliveries(endpoint.id)] == ["fine_tuning.job.succeeded"]
    assert worker.running is None


def test_a_training_error_fails_the_job_with_it(
    jobs: JobService, training_file: str, worker: Worker, executor: ScriptedExecutor, memory_store: InMemoryStore
) -> None:
    job_id = _queued_job(jobs, training_file, worker)
    error = {"kind": "error", "code": "invalid_training_file", "message": "Example 3 is too long", "param": None}
    executor.handles.append(ScriptedHandle([error], code=1))
    assert worker.start_next_job()
    worker.pump_running()
    job = memory_store.get_job(job_id)
    assert job.status == st.FAILED and job.error == {
        "code": "invalid_training_file",
        "message": "Example 3 is too long",
        "param": None,
    }


def test_cancelling_a_running_job_stops_its_process_and_frees_the_worker(
    jobs: JobService, training_file: str, worker: Worker, executor: ScriptedExecutor, memory_store: InMemoryStore
) -> None:
    job_id = _queued_job(jobs, training_file, worker)
    handle = ScriptedHandle([METRICS], running=True)
    executor.handles.append(handle)
    assert worker.start_next_job()
    assert worker.pump_running()  # the metrics line
    assert jobs.cancel(ORG, job_id).status == st.CANCELLED
    worker.pump_running()
    assert handle.signals == ["TERM"]
    assert worker.pump_running() and worker.running is None and handle.closed
    assert memory_store.get_job(job_id).status == st.CANCELLED


def test_pausing_a_running_job_stops_it_and_releases_it_paused(
    jobs: JobService, training_file: str, worker: Worker, executor: ScriptedExecutor, memory_store: InMemoryStore
) -> None:
    job_id = _queued_job(jobs, training_file, worker)
    handle = ScriptedHandle([], running=True, exit_when_stopped=0)
    executor.handles.append(handle)
    assert worker.start_next_job()
    jobs.pause(ORG, job_id)
    handle.lines.append({"kind": "stopped", "step": 1})
    worker.pump_running()
    assert handle.signals == ["TERM"] and worker.running is None
    job = memory_store.get_job(job_id)
    assert (job.status, job.worker_id) == (st.PAUSED, None)
    assert _messages(memory_store, job_id)[-1].startswith("Training stopped at step 1")
    assert jobs.resume(ORG, job_id).status == st.QUEUED
    executor.handles.append(ScriptedHandle([RESULT]))
    assert worker.start_next_job() and worker.pump_running()
    assert memory_store.get_job(job_id).status == st.SUCCEEDED


def test_two_workers_never_claim_the_same_job(
    jobs: JobService, training_file: str, worker: Worker, memory_store: InMemoryStore
) -> None:
    job_id = _create(jobs, training_file)
    other = Worker(worker.settings, memory_store, worker_id="unit-worker-2", executor=ScriptedExecutor())
    first = memory_store.claim_next_job(worker.worker_id, st.VALIDATING)
    assert first is not None and first.id == job_id
    assert other.validate_next_job() is False
    assert memory_store.get_job(job_id).worker_id == worker.worker_id
