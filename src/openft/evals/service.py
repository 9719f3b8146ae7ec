"""EvalService: ``/v1/evals``, its runs and output items, behind the HTTP layer.

Creating a run checks what can be checked then (``sources.check``) and queues it; a ``RunExecutor``
(``executor.py``) claims and runs it in the background, never in the request.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from openft.errors import InvalidRequest, NotFound
from openft.evals import sources, spec
from openft.files.service import FileService
from openft.graders.confinement import check_python_graders
from openft.graders.service import judge_models
from openft.graders.spec import parse_grader
from openft.serving.backend import ServedModel
from openft.settings import Settings
from openft.store import Store
from openft.store.evals import QUEUED, EvalRow, EvalRunRow, OutputItemRow
from openft.tenancy import Principal


def new_eval_id() -> str:
    return f"eval_{secrets.token_hex(16)}"


def new_run_id() -> str:
    return f"evalrun_{secrets.token_hex(16)}"


def _page_args(limit: int, order: str) -> tuple[int, str]:
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100.", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be asc or desc.", param="order")
    return limit, order


class EvalService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        files: FileService,
        resolve_model: Callable[[Principal, str], ServedModel],
    ):
        """``store`` keeps the evals (``store.evals``); ``resolve_model`` is the serving registry's ``resolve``
        (which models a caller may use)."""
        self.settings = settings
        self.evals = store.evals
        self.files = files
        self._resolve = resolve_model

    def _may_use(self, principal: Principal, model: str) -> bool:
        try:
            self._resolve(principal, model)
        except NotFound:
            return False
        return True

    def _validate_grader(self, principal: Principal, grader: Any, param: str) -> dict[str, Any]:
        parsed = parse_grader(grader, param=param)
        check_python_graders(parsed, param=param, allow_unconfined=self.settings.allow_unconfined_python_graders)
        for model in judge_models(parsed):
            if not self._may_use(principal, model):
                raise InvalidRequest(
                    f"The grader model `{model}` does not exist or you do not have access to it.",
                    param=f"{param}.model",
                    code="model_not_found",
                )
        return parsed

    # -- evals -------------------------------------------------------------------------------
    def create_eval(self, principal: Principal, params: dict[str, Any]) -> EvalRow:
        """Raises InvalidRequest for anything ``spec`` refuses."""
        config = params.get("data_source_config")
        if not isinstance(config, dict):
            raise InvalidRequest("data_source_config is required.", param="data_source_config")
        stored_config = spec.data_source_config(config)
        criteria = spec.testing_criteria(
            params.get("testing_criteria"),
            validate=lambda grader, param: self._validate_grader(principal, grader, param),
            schema=spec.item_schema(stored_config),
        )
        metadata = params.get("metadata")
        spec.check_metadata(metadata)
        name = params.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 512):
            raise InvalidRequest("name must be a string of at most 512 characters.", param="name")
        row = EvalRow(
            id=new_eval_id(),
            organization_id=principal.organization_id,
            project_id=principal.project_id,
            name=name or "",
            data_source_config=stored_config,
            testing_criteria=criteria,
            created_at=int(time.time()),
            metadata=metadata,
        )
        self.evals.insert_eval(row)
        return row

    def get_eval(self, principal: Principal, eval_id: str) -> EvalRow:
        return self.evals.get_eval(eval_id, principal.organization_id)

    def update_eval(self, principal: Principal, eval_id: str, params: dict[str, Any]) -> EvalRow:
        values: dict[str, Any] = {}
        if "name" in params and params["name"] is not None:
            if not isinstance(params["name"], str) or len(params["name"]) > 512:
                raise InvalidRequest("name must be a string of at most 512 characters.", param="name")
            values["name"] = params["name"]
        if "metadata" in params:
            spec.check_metadata(params["metadata"])
            values["metadata"] = params["metadata"]
        self.get_eval(principal, eval_id)
        return self.evals.update_eval(eval_id, principal.organization_id, **values)

    def list_evals(
        self, principal: Principal, *, after: str | None, limit: int, order: str
    ) -> tuple[list[EvalRow], bool]:
        limit, order = _page_args(limit, order)
        return self.evals.list_evals(principal.organization_id, after=after, limit=limit, order=order)

    def delete_eval(self, principal: Principal, eval_id: str) -> None:
        self.evals.delete_eval(eval_id, principal.organization_id)

    # -- runs --------------------------------------------------------------------------------
    def create_run(self, principal: Principal, eval_id: str, params: dict[str, Any]) -> EvalRunRow:
        """Check the run's data source and queue the run.

        Raises:
            EvalNotFound: no such eval for this organization.
            InvalidRequest: what ``sources.check`` refuses, or bad metadata or name.
        """
        eval_row = self.get_eval(principal, eval_id)
        data_source = params.get("data_source")
        model = sources.check(
            data_source,
            schema=spec.item_schema(eval_row.data_source_config),
            file_exists=lambda file_id: self._file_exists(principal, file_id),
            model_exists=lambda model: self._may_use(principal, model),
        )
        metadata = params.get("metadata")
        spec.check_metadata(metadata)
        name = params.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 512):
            raise InvalidRequest("name must be a string of at most 512 characters.", param="name")
        assert isinstance(data_source, dict)  # checked by sources.check
        row = EvalRunRow(
            id=new_run_id(),
            eval_id=eval_id,
            organization_id=principal.organization_id,
            project_id=principal.project_id,
            name=name or f"{model or data_source['type']} run",
            status=QUEUED,
            data_source=data_source,
            created_at=int(time.time()),
            model=model,
            metadata=metadata,
        )
        self.evals.insert_run(row)
        return row

    def _file_exists(self, principal: Principal, file_id: str) -> bool:
        try:
            self.files.get(principal, file_id)
        except NotFound:
            return False
        return True

    def get_run(self, principal: Principal, eval_id: str, run_id: str) -> EvalRunRow:
        self.get_eval(principal, eval_id)
        return self.evals.get_run(run_id, principal.organization_id, eval_id)

    def list_runs(
        self, principal: Principal, eval_id: str, *, after: str | None, limit: int, order: str, status: str | None
    ) -> tuple[list[EvalRunRow], bool]:
        limit, order = _page_args(limit, order)
        self.get_eval(principal, eval_id)
        return self.evals.list_runs(eval_id, after=after, limit=limit, order=order, status=status)

    def cancel_run(self, principal: Principal, eval_id: str, run_id: str) -> EvalRunRow:
        self.get_run(principal, eval_id, run_id)
        return self.evals.cancel_run(run_id, principal.organization_id, eval_id)

    def delete_run(self, principal: Principal, eval_id: str, run_id: str) -> None:
        self.get_eval(principal, eval_id)
        self.evals.delete_run(run_id, principal.organization_id, eval_id)

    # -- output items ------------------------------------------------------------------------
    def list_output_items(
        self,
        principal: Principal,
        eval_id: str,
        run_id: str,
        *,
        after: str | None,
        limit: int,
        order: str,
        status: str | None,
    ) -> tuple[list[OutputItemRow], bool]:
        limit, order = _page_args(limit, order)
        if status not in (None, "pass", "fail", "error"):
            raise InvalidRequest("status must be pass, fail or error.", param="status")
        self.get_run(principal, eval_id, run_id)
        return self.evals.list_output_items(run_id, after=after, limit=limit, order=order, status=status)

    def get_output_item(self, principal: Principal, eval_id: str, run_id: str, item_id: str) -> OutputItemRow:
        self.get_run(principal, eval_id, run_id)
        return self.evals.get_output_item(item_id, run_id)
