"""POST /v1/fine_tuning/jobs/estimate: what a job would train and cost here, without creating it.

The body is that of ``fine_tuning.jobs.create``. Validating and tokenizing a large file, or calibrating
throughput the first time, takes a while: the estimate runs on threads of its own (two at once; more
wait), never on the event loop, the read threads or a job worker.
"""

from __future__ import annotations

import functools
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response

from openft.api.deps import PrincipalDep
from openft.api.json_response import json_response
from openft.api.openapi import errors
from openft.jobs.estimate import JobEstimator
from openft.types.fine_tuning.fine_tuning_job import JobCreateParams
from openft.types.fine_tuning.job_estimate import FineTuningJobEstimate

ESTIMATE_THREADS = 2

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


async def _estimator(request: Request) -> JobEstimator:
    estimator: JobEstimator = request.app.state.estimates
    return estimator


EstimatorDep = Annotated[JobEstimator, Depends(_estimator)]


def _limiter(request: Request) -> anyio.CapacityLimiter:
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "estimate_limiter", None)
    if limiter is None:  # created inside the running event loop, as anyio expects
        limiter = request.app.state.estimate_limiter = anyio.CapacityLimiter(ESTIMATE_THREADS)
    return limiter


@router.post("/estimate", response_model=FineTuningJobEstimate, responses=errors(400, 404))
async def estimate_job(
    request: Request,
    principal: PrincipalDep,
    estimator: EstimatorDep,
    params: JobCreateParams,
) -> Response:
    """Validate the files as a job would and estimate its trained tokens, peak memory and running time."""
    call = functools.partial(estimator.estimate, principal, params)
    return json_response(await anyio.to_thread.run_sync(call, limiter=_limiter(request)))
