"""/v1/evals: evals, their runs and the runs' output items, as OpenAI's ``client.evals`` speaks them.

Runs execute in the background (``evals/executor.py``); a run's ``report_url`` is its dashboard page.
openft adds ``started_at`` and ``completed_at`` (epoch seconds, null until then) to a run, for the
dashboard's durations. ``order_by=updated_at`` orders evals by creation: an eval's update keeps its place.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request

from openft.api.deps import PrincipalDep
from openft.evals.service import EvalService
from openft.store.evals import EvalRow, EvalRunRow, OutputItemRow
from openft.types.shared import list_object

router = APIRouter(prefix="/v1/evals", tags=["evals"])


async def _service(request: Request) -> EvalService:
    evals: EvalService = request.app.state.evals
    return evals


EvalsDep = Annotated[EvalService, Depends(_service)]
JsonBody = Annotated[dict[str, Any], Body()]
Order = Literal["asc", "desc"]


def eval_to_wire(row: EvalRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "eval",
        "name": row.name,
        "created_at": row.created_at,
        "metadata": row.metadata,
        "data_source_config": row.data_source_config,
        "testing_criteria": row.testing_criteria,
    }


def run_to_wire(row: EvalRunRow, base_url: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "eval.run",
        "eval_id": row.eval_id,
        "name": row.name,
        "status": row.status,
        "model": row.model or "",
        "created_at": row.created_at,
        "data_source": row.data_source,
        "metadata": row.metadata,
        "error": row.error,
        "result_counts": row.result_counts,
        "per_testing_criteria_results": row.per_testing_criteria_results,
        "per_model_usage": row.per_model_usage,
        "report_url": f"{base_url.rstrip('/')}/evals/{row.eval_id}/runs/{row.id}",
        "started_at": int(row.started_at) if row.started_at else None,
        "completed_at": int(row.finished_at) if row.finished_at else None,
    }


def item_to_wire(row: OutputItemRow) -> dict[str, Any]:
    sample = {k: v for k, v in row.sample.items() if k != "grader_usage"}
    return {
        "id": row.id,
        "object": "eval.run.output_item",
        "eval_id": row.eval_id,
        "run_id": row.run_id,
        "created_at": row.created_at,
        "status": row.status,
        "datasource_item_id": row.datasource_item_id,
        "datasource_item": row.datasource_item,
        "results": row.results,
        "sample": sample,
    }


# Plain ``def`` handlers: checks read the database and the model registry, so FastAPI runs them in its pool.
@router.post("")
def create_eval(principal: PrincipalDep, evals: EvalsDep, body: JsonBody) -> dict[str, Any]:
    return eval_to_wire(evals.create_eval(principal, body))


@router.get("")
def list_evals(
    principal: PrincipalDep,
    evals: EvalsDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "asc",
    order_by: Literal["created_at", "updated_at"] = "created_at",
) -> dict[str, Any]:
    rows, has_more = evals.list_evals(principal, after=after, limit=limit, order=order)
    return list_object([eval_to_wire(r) for r in rows], has_more)


@router.get("/{eval_id}")
def retrieve_eval(principal: PrincipalDep, evals: EvalsDep, eval_id: str) -> dict[str, Any]:
    return eval_to_wire(evals.get_eval(principal, eval_id))


@router.post("/{eval_id}")
def update_eval(principal: PrincipalDep, evals: EvalsDep, eval_id: str, body: JsonBody) -> dict[str, Any]:
    return eval_to_wire(evals.update_eval(principal, eval_id, body))


@router.delete("/{eval_id}")
def delete_eval(principal: PrincipalDep, evals: EvalsDep, eval_id: str) -> dict[str, Any]:
    evals.delete_eval(principal, eval_id)
    return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}


@router.post("/{eval_id}/runs")
def create_run(
    request: Request, principal: PrincipalDep, evals: EvalsDep, eval_id: str, body: JsonBody
) -> dict[str, Any]:
    return run_to_wire(evals.create_run(principal, eval_id, body), str(request.base_url))


@router.get("/{eval_id}/runs")
def list_runs(
    request: Request,
    principal: PrincipalDep,
    evals: EvalsDep,
    eval_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "asc",
    status: Literal["queued", "in_progress", "completed", "canceled", "failed"] | None = None,
) -> dict[str, Any]:
    rows, has_more = evals.list_runs(principal, eval_id, after=after, limit=limit, order=order, status=status)
    return list_object([run_to_wire(r, str(request.base_url)) for r in rows], has_more)


@router.get("/{eval_id}/runs/{run_id}")
def retrieve_run(
    request: Request, principal: PrincipalDep, evals: EvalsDep, eval_id: str, run_id: str
) -> dict[str, Any]:
    return run_to_wire(evals.get_run(principal, eval_id, run_id), str(request.base_url))


@router.post("/{eval_id}/runs/{run_id}/cancel")
@router.post("/{eval_id}/runs/{run_id}")
def cancel_run(request: Request, principal: PrincipalDep, evals: EvalsDep, eval_id: str, run_id: str) -> dict[str, Any]:
    return run_to_wire(evals.cancel_run(principal, eval_id, run_id), str(request.base_url))


@router.delete("/{eval_id}/runs/{run_id}")
def delete_run(principal: PrincipalDep, evals: EvalsDep, eval_id: str, run_id: str) -> dict[str, Any]:
    evals.delete_run(principal, eval_id, run_id)
    return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}


@router.get("/{eval_id}/runs/{run_id}/output_items")
def list_output_items(
    principal: PrincipalDep,
    evals: EvalsDep,
    eval_id: str,
    run_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "asc",
    status: Literal["pass", "fail", "error"] | None = None,
) -> dict[str, Any]:
    rows, has_more = evals.list_output_items(
        principal, eval_id, run_id, after=after, limit=limit, order=order, status=status
    )
    return list_object([item_to_wire(r) for r in rows], has_more)


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}")
def retrieve_output_item(
    principal: PrincipalDep, evals: EvalsDep, eval_id: str, run_id: str, output_item_id: str
) -> dict[str, Any]:
    return item_to_wire(evals.get_output_item(principal, eval_id, run_id, output_item_id))
