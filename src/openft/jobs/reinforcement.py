"""Checks of a reinforcement job's ``method.reinforcement`` when the job is created."""

from __future__ import annotations

from typing import Any

from openft.errors import InvalidRequest
from openft.graders.confinement import check_python_graders
from openft.graders.spec import parse_grader
from openft.jobs.hyperparameters import REASONING_EFFORTS


def _number(hyper: dict[str, Any], name: str, *, integer: bool, low: float, high: float | None = None) -> None:
    value = hyper.get(name)
    if value is None or value == "auto":
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low or (high is not None and value > high):
        bounds = f"at least {low:g}" if high is None else f"between {low:g} and {high:g}"
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(
            f"{name} must be 'auto' or {kind} {bounds}.", param=f"method.reinforcement.hyperparameters.{name}"
        )


def check_reinforcement_method(
    method: dict[str, Any], validation_file: str | None, *, allow_unconfined_python: bool = False
) -> None:
    """Check ``method`` (type ``reinforcement``) in place: its grader is replaced by the parsed one.

    Raises:
        InvalidRequest: no validation file (RFT needs both files), no or an invalid grader, a python
            grader this server cannot confine (unless ``allow_unconfined_python``), or a
            hyperparameter out of OpenAI's range.
    """
    if not validation_file:
        raise InvalidRequest(
            "Reinforcement fine-tuning needs both a training file and a validation file.",
            param="validation_file",
        )
    section = method.get("reinforcement") or {}
    if not section.get("grader"):
        raise InvalidRequest("Reinforcement fine-tuning needs a grader.", param="method.reinforcement.grader")
    section["grader"] = parse_grader(section["grader"], param="method.reinforcement.grader")
    check_python_graders(
        section["grader"], param="method.reinforcement.grader", allow_unconfined=allow_unconfined_python
    )
    hyper = section.get("hyperparameters") or {}
    _number(hyper, "compute_multiplier", integer=False, low=1e-5, high=10)
    _number(hyper, "eval_interval", integer=True, low=1)
    _number(hyper, "eval_samples", integer=True, low=1)
    effort = hyper.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}.",
            param="method.reinforcement.hyperparameters.reasoning_effort",
        )
    method["reinforcement"] = section
