"""Parse and check a grader object (``method.reinforcement.grader``, or a graders API request)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from openft.errors import InvalidRequest
from openft.graders import formula
from openft.types.graders import Grader, MultiGrader

_ADAPTER: TypeAdapter[Grader] = TypeAdapter(Grader)


def sub_graders(grader: MultiGrader | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A multi grader's graders by formula variable: the map's keys, else each grader's ``name``."""
    graders = grader.graders if isinstance(grader, MultiGrader) else grader["graders"]
    if isinstance(graders, dict) and "type" not in graders:
        return {name: _plain(g) for name, g in graders.items()}
    items = graders if isinstance(graders, list) else [graders]
    return {_plain(g)["name"]: _plain(g) for g in items}


def _plain(grader: Any) -> dict[str, Any]:
    return grader if isinstance(grader, dict) else grader.model_dump(exclude_none=True)


def parse_grader(data: Any, *, param: str = "grader") -> dict[str, Any]:
    """The grader as a plain dict (defaults filled, unknown keys rejected), checked.

    Raises:
        InvalidRequest: the object is not a grader OpenAI defines, or is inconsistent (a formula
            that does not parse or names an unknown grader, passing labels that are not labels,
            a score range whose low end is not below its high end).
    """
    try:
        grader = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(
            f"Invalid grader: {first['msg']}" + (f" at '{where}'" if where else "") + ".",
            param=param,
            code="invalid_grader",
        ) from None
    plain = grader.model_dump(exclude_none=True)
    _check(plain, param)
    return plain


def _check(grader: dict[str, Any], param: str) -> None:
    kind = grader["type"]
    if kind == "score_model" and "range" in grader:
        low, high = grader["range"]
        if not low < high:
            raise InvalidRequest("A score_model grader's range must be [low, high] with low < high.", param=param)
    if kind == "label_model":
        extra = set(grader["passing_labels"]) - set(grader["labels"])
        if extra:
            raise InvalidRequest(
                f"passing_labels must be a subset of labels; not labels: {', '.join(sorted(extra))}.", param=param
            )
    if kind == "python":
        try:
            compile(grader["source"], "grader.py", "exec")
        except (SyntaxError, ValueError) as exc:
            raise InvalidRequest(f"The python grader's source does not compile: {exc}.", param=param) from None
        if "def grade" not in grader["source"]:
            raise InvalidRequest("The python grader's source must define grade(sample, item).", param=param)
    if kind == "multi":
        graders = sub_graders(grader)
        for name, sub in graders.items():
            _check(sub, f"{param}.graders.{name}")
        try:
            tree = formula.parse(grader["calculate_output"])
        except formula.FormulaError as exc:
            raise InvalidRequest(f"calculate_output: {exc}", param=param, code="invalid_grader") from None
        unknown = formula.variables(tree) - set(graders)
        if unknown:
            raise InvalidRequest(
                f"calculate_output uses {', '.join(sorted(unknown))}, which is not one of the graders "
                f"({', '.join(graders)}).",
                param=param,
                code="invalid_grader",
            )
