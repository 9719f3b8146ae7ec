"""/v1/fine_tuning/alpha/graders: run a grader on one sample, or validate one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from openft.api.deps import PrincipalDep
from openft.graders.service import GraderService
from openft.types.graders import GraderRunParams, GraderRunResponse, GraderValidateParams, GraderValidateResponse

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["fine-tuning"])


def _graders(request: Request) -> GraderService:
    state = request.app.state
    if getattr(state, "graders", None) is None:
        state.graders = GraderService(state.settings, state.registry.resolve, state.backend)
    graders: GraderService = state.graders
    return graders


GradersDep = Annotated[GraderService, Depends(_graders)]


# Plain ``def`` handlers: grading blocks (a sandbox process, a model), so FastAPI runs them in its threadpool.
@router.post("/run", response_model=GraderRunResponse)
def run_grader(body: GraderRunParams, principal: PrincipalDep, graders: GradersDep) -> GraderRunResponse:
    result = graders.run(principal, body.grader, body.model_sample, body.item)
    return GraderRunResponse.model_validate(result)


@router.post("/validate", response_model=GraderValidateResponse)
def validate_grader(body: GraderValidateParams, principal: PrincipalDep, graders: GradersDep) -> GraderValidateResponse:
    return GraderValidateResponse(grader=graders.validate(principal, body.grader))
