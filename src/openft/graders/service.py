"""GraderService: ``/v1/fine_tuning/alpha/graders/run`` and ``/validate`` behind the HTTP layer.

Model graders judge with the server's own models (the registry and serving backend that answer
``/v1/chat/completions``), on behalf of the caller: an organization can judge only with the base
models and its own fine-tuned models. Python graders run in the sandbox with the server's data
directory and database directory hidden, and are refused where they cannot be confined
(``confinement.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from openft.errors import InvalidRequest, NotFound
from openft.graders.confinement import check_python_graders
from openft.graders.embeddings import available_embedder
from openft.graders.judge import ServingJudge
from openft.graders.runner import GraderContext, run_grader
from openft.graders.sandbox import SandboxLimits
from openft.graders.spec import parse_grader, sub_graders
from openft.graders.template import make_sample
from openft.settings import Settings
from openft.tenancy import Principal


def private_dirs(settings: Settings) -> list[str]:
    """The directories a python grader must never see: the data directory and the SQLite database's."""
    dirs = [str(settings.home)]
    url = settings.sqlalchemy_url
    if url.startswith("sqlite:///"):
        dirs.append(str(Path(url.removeprefix("sqlite:///")).parent))
    return dirs


def judge_models(grader: dict[str, Any]) -> list[str]:
    """The models a grader (or any grader inside a multi grader) asks to judge."""
    if grader["type"] in ("score_model", "label_model"):
        return [grader["model"]]
    if grader["type"] == "multi":
        return [m for sub in sub_graders(grader).values() for m in judge_models(sub)]
    return []


class GraderService:
    def __init__(self, settings: Settings, resolve_model: Callable[[Principal, str], Any], backend: Callable[[], Any]):
        """``resolve_model`` is the serving registry's ``resolve``; ``backend`` returns the serving backend."""
        self.settings = settings
        self._resolve = resolve_model
        self._backend = backend
        self.limits = SandboxLimits(
            wall_seconds=settings.python_grader_timeout_seconds, cpu_seconds=settings.python_grader_timeout_seconds
        )

    def validate(self, principal: Principal, grader: Any) -> dict[str, Any]:
        """The checked grader, as OpenAI echoes it.

        Raises:
            InvalidRequest: the grader is malformed, names a model this organization cannot use, or is
                (or contains) a python grader this server cannot confine.
        """
        parsed = parse_grader(grader)
        check_python_graders(parsed, param="grader", allow_unconfined=self.settings.allow_unconfined_python_graders)
        for model in judge_models(parsed):
            try:
                self._resolve(principal, model)
            except NotFound:
                raise InvalidRequest(
                    f"The grader model `{model}` does not exist or you do not have access to it.",
                    param="grader.model",
                    code="model_not_found",
                ) from None
        return parsed

    def run(self, principal: Principal, grader: Any, model_sample: str, item: dict[str, Any] | None) -> dict[str, Any]:
        """Grade ``model_sample`` for ``item``; the ``RunGraderResponse`` body.

        Raises:
            InvalidRequest: the grader is malformed or names a model this organization cannot use.
        """
        parsed = self.validate(principal, grader)
        context = GraderContext(
            judge=ServingJudge(self._resolve, self._backend, principal),
            embedder=available_embedder(),
            hide=private_dirs(self.settings),
            limits=self.limits,
            allow_unconfined=self.settings.allow_unconfined_python_graders,
        )
        return run_grader(parsed, make_sample(model_sample), item or {}, context).response()
