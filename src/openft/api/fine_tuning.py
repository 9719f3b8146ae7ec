"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from openft.api.deps import JobsDep, PrincipalDep, ReadsDep
from openft.api.json_response import json_response
from openft.jobs import status as st
from openft.store.rows import CheckpointRow, EventRow, JobRow
from openft.types.fine_tuning.fine_tuning_job import (
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobCreateParams,
)
from openft.types.shared import CursorPage, page_of

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def job_to_wire(row: JobRow) -> FineTuningJob:
    # One validation of the whole object: cheaper than a model per nested field, and the same result.
    return FineTuningJob.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "error": row.error if row.error and row.status == st.FAILED else None,
            "fine_tuned_model": row.fine_tuned_model if row.status == st.SUCCEEDED else None,
            "finished_at": row.finished_at,
            "hyperparameters": row.hyperparameters,
            "model": row.model,
            "organization_id": row.organization_id,
            "result_files": row.result_files,
            "seed": row.seed,
            "status": row.status,
            "trained_tokens": row.trained_tokens if row.status == st.SUCCEEDED else None,
            "training_file": row.training_file,
            "validation_file": row.validation_file,
            "estimated_finish": row.estimated_finish if row.status == st.RUNNING else None,
            "integrations": row.integrations or None,
            "metadata": row.metadata,
            "method": row.method,
            "user_provided_suffix": row.suffix,
            "openft": row.openft if row.status == st.SUCCEEDED else None,
        }
    )


def event_to_wire(row: EventRow) -> FineTuningJobEvent:
    # The store keeps level and type as plain strings; validation checks them against the wire's literals.
    return FineTuningJobEvent.model_validate(
        {
            "id": row.id,
            "created_at": row.created_at,
            "level": row.level,
            "message": row.message,
            "data": row.data,
            "type": row.type,
        }
    )


def checkpoint_to_wire(row: CheckpointRow) -> FineTuningJobCheckpoint:
    return FineTuningJobCheckpoint(
        id=row.id,
        created_at=row.created_at,
        fine_tuned_model_checkpoint=row.fine_tuned_model_checkpoint,
        fine_tuning_job_id=row.job_id,
        metrics=row.metrics,
        step_number=row.step_number,
    )


def _metadata_filter(request: Request) -> dict[str, str] | None:
    """``metadata[key]=value`` query parameters, as the official clients send them."""
    found = {
        k[len("metadata[") : -1]: v
        for k, v in request.query_params.items()
        if k.startswith("metadata[") and k.endswith("]")
    }
    return found or None


@router.post("", response_model=FineTuningJob)
def create_job(principal: PrincipalDep, jobs: JobsDep, params: JobCreateParams) -> Response:
    return json_response(job_to_wire(jobs.create(principal, params)))


@router.get("", response_model=CursorPage[FineTuningJob])
async def list_jobs(
    request: Request,
    principal: PrincipalDep,
    jobs: JobsDep,
    reads: ReadsDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    rows, has_more = await reads.run(jobs.list, principal, after=after, limit=limit, metadata=_metadata_filter(request))
    return json_response(CursorPage[FineTuningJob](data=[job_to_wire(r) for r in rows], has_more=has_more))


@router.get("/{fine_tuning_job_id}", response_model=FineTuningJob)
async def retrieve_job(principal: PrincipalDep, jobs: JobsDep, reads: ReadsDep, fine_tuning_job_id: str) -> Response:
    return json_response(job_to_wire(await reads.run(jobs.get, principal, fine_tuning_job_id)))


@router.post("/{fine_tuning_job_id}/cancel", response_model=FineTuningJob)
def cancel_job(principal: PrincipalDep, jobs: JobsDep, fine_tuning_job_id: str) -> Response:
    return json_response(job_to_wire(jobs.cancel(principal, fine_tuning_job_id)))


@router.post("/{fine_tuning_job_id}/pause", response_model=FineTuningJob)
def pause_job(principal: PrincipalDep, jobs: JobsDep, fine_tuning_job_id: str) -> Response:
    return json_response(job_to_wire(jobs.pause(principal, fine_tuning_job_id)))


@router.post("/{fine_tuning_job_id}/resume", response_model=FineTuningJob)
def resume_job(principal: PrincipalDep, jobs: JobsDep, fine_tuning_job_id: str) -> Response:
    return json_response(job_to_wire(jobs.resume(principal, fine_tuning_job_id)))


@router.get("/{fine_tuning_job_id}/events", response_model=CursorPage[FineTuningJobEvent])
async def list_events(
    principal: PrincipalDep,
    jobs: JobsDep,
    reads: ReadsDep,
    fine_tuning_job_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Response:
    rows, has_more = await reads.run(jobs.events, principal, fine_tuning_job_id, after=after, limit=limit)
    return json_response(CursorPage[FineTuningJobEvent](data=[event_to_wire(r) for r in rows], has_more=has_more))


@router.get("/{fine_tuning_job_id}/checkpoints", response_model=CursorPage[FineTuningJobCheckpoint])
async def list_checkpoints(
    principal: PrincipalDep,
    jobs: JobsDep,
    reads: ReadsDep,
    fine_tuning_job_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    rows, has_more = await reads.run(jobs.checkpoints, principal, fine_tuning_job_id, after=after, limit=limit)
    return json_response(page_of([checkpoint_to_wire(r) for r in rows], has_more))
