"""Checks of an eval when it is created: its data source config, its testing criteria, its templates.

What can be seen wrong at create time is a 400 naming the parameter: an item schema that is not a
JSON schema, a criterion type openft does not run, a template with a malformed variable, a namespace
other than ``item``/``sample`` or an item field the item schema does not declare, a judge model the
caller cannot use, a python grader this server cannot confine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema

from openft.errors import InvalidRequest
from openft.graders.template import TemplateError, lookup

CRITERION_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")
DEFAULT_PASS_THRESHOLD = 0.5
"""A python, score_model or multi criterion without ``pass_threshold`` passes at a score of 0.5 or more."""

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

STORED_COMPLETIONS_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "model": {"type": "string"},
        "input": {"type": "array", "items": {"type": "object"}},
        "output_text": {"type": "string"},
        "metadata": {"type": "object"},
    },
    "required": ["input", "output_text"],
}
SAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "choices": {"type": "array"},
        "output_text": {"type": "string"},
        "output_json": {},
    },
    "required": ["model", "choices"],
}


def check_metadata(metadata: Any, param: str = "metadata") -> None:
    """OpenAI's metadata limits: at most 16 pairs, keys up to 64 characters, values up to 512."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be an object of strings.", param=param)
    if len(metadata) > 16:
        raise InvalidRequest("metadata can have at most 16 key-value pairs.", param=param)
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise InvalidRequest(f"metadata value for '{key[:64]}' must be a string.", param=param)
        if len(key) > 64:
            raise InvalidRequest(f"metadata key '{key[:70]}' is longer than 64 characters.", param=param)
        if len(value) > 512:
            raise InvalidRequest(f"metadata value for '{key}' is longer than 512 characters.", param=param)
        if "\x00" in key + value:
            raise InvalidRequest("metadata cannot contain NUL characters.", param=param)


def _wrapped(item_schema: dict[str, Any], with_sample: bool) -> dict[str, Any]:
    """The ``schema`` OpenAI returns: the item schema (and the sample's) under ``item`` and ``sample``."""
    properties: dict[str, Any] = {"item": item_schema}
    if with_sample:
        properties["sample"] = SAMPLE_SCHEMA
    return {"type": "object", "properties": properties, "required": list(properties)}


def data_source_config(config: dict[str, Any]) -> dict[str, Any]:
    """The stored (and returned) data source config of a create request.

    Raises:
        InvalidRequest: an unknown type, or an item schema that is not a JSON schema.
    """
    kind = config.get("type")
    if kind == "custom":
        item_schema = config.get("item_schema")
        if not isinstance(item_schema, dict):
            raise InvalidRequest("item_schema must be a JSON schema object.", param="data_source_config.item_schema")
        try:
            jsonschema.Draft202012Validator.check_schema(item_schema)
        except jsonschema.SchemaError as exc:
            raise InvalidRequest(
                f"item_schema is not a valid JSON schema: {exc.message}", param="data_source_config.item_schema"
            ) from None
        return {"type": "custom", "schema": _wrapped(item_schema, bool(config.get("include_sample_schema")))}
    if kind in ("stored_completions", "logs"):
        metadata = config.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("metadata must be an object.", param="data_source_config.metadata")
        return {"type": kind, "metadata": metadata, "schema": _wrapped(STORED_COMPLETIONS_ITEM_SCHEMA, True)}
    raise InvalidRequest(
        f"Unknown data_source_config type '{kind}'; expected custom, stored_completions or logs.",
        param="data_source_config.type",
    )


def item_schema(config: dict[str, Any]) -> dict[str, Any]:
    """The item schema inside a stored data source config."""
    schema: dict[str, Any] = config["schema"]["properties"]["item"]
    return schema


def item_errors(schema: dict[str, Any], item: Any) -> str | None:
    """Why ``item`` does not match ``schema``, or None when it does."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(item))
    if error is None:
        return None
    message: str = error.message
    where = "/".join(str(p) for p in error.absolute_path)
    return message + (f" (at {where})" if where else "")


def template_strings(value: Any) -> Iterator[str]:
    """Every string inside a criterion or message template, however nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key not in ("source", "type", "name", "model", "labels", "passing_labels", "operation"):
                yield from template_strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from template_strings(inner)


def check_templates(value: Any, *, param: str, namespaces: tuple[str, ...], schema: dict[str, Any] | None) -> None:
    """Every ``{{ ... }}`` in ``value`` is well formed, in ``namespaces``, and (for ``item``) names a field
    that ``schema`` declares when the schema lists its properties.

    Raises:
        InvalidRequest: the first template that is not.
    """
    declared = (schema or {}).get("properties")
    for text in template_strings(value):
        for match in _PLACEHOLDER.finditer(text):
            path = match.group(1)
            namespace = re.match(r"[A-Za-z_][A-Za-z0-9_]*", path)
            if namespace is None or namespace.group() not in namespaces:
                raise InvalidRequest(
                    f"Template variable '{{{{{path}}}}}' must start with {' or '.join(namespaces)}.",
                    param=param,
                    code="invalid_template",
                )
            probe = {name: _Anything() for name in namespaces}
            try:
                lookup(path, probe)
            except TemplateError as exc:
                raise InvalidRequest(str(exc), param=param, code="invalid_template") from None
            field = re.match(r"item\s*\.\s*([A-Za-z_][A-Za-z0-9_\-]*)", path)
            if field and isinstance(declared, dict) and field.group(1) not in declared:
                raise InvalidRequest(
                    f"Template variable '{{{{{path}}}}}' names '{field.group(1)}', which the item schema does not "
                    f"declare ({', '.join(declared) or 'no properties'}).",
                    param=param,
                    code="invalid_template",
                )


class _Anything(dict[Any, Any]):
    """Resolves every key and index, so that only the shape of a template path is checked."""

    def __getitem__(self, key: Any) -> Any:
        return _Anything()


def testing_criteria(
    criteria: Any, *, validate: Callable[[Any, str], dict[str, Any]], schema: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The stored criteria: each parsed by ``validate`` (the graders' own checks: type, model access,
    confinement), with its ``pass_threshold`` kept, and its templates checked.

    Raises:
        InvalidRequest: no criteria, a duplicate name, an unknown type or a bad grader or template.
    """
    if not isinstance(criteria, list) or not criteria:
        raise InvalidRequest("testing_criteria must be a non-empty list.", param="testing_criteria")
    parsed: list[dict[str, Any]] = []
    for index, criterion in enumerate(criteria):
        param = f"testing_criteria[{index}]"
        if not isinstance(criterion, dict):
            raise InvalidRequest("A testing criterion must be an object.", param=param)
        kind = criterion.get("type")
        if kind not in CRITERION_TYPES:
            raise InvalidRequest(
                f"Unknown testing criterion type '{kind}'; expected one of {', '.join(CRITERION_TYPES)}.",
                param=f"{param}.type",
                code="invalid_grader",
            )
        grader = {k: v for k, v in criterion.items() if k != "pass_threshold"}
        threshold = criterion.get("pass_threshold")
        if kind == "text_similarity" and threshold is None:
            raise InvalidRequest("A text_similarity criterion needs pass_threshold.", param=f"{param}.pass_threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
            raise InvalidRequest("pass_threshold must be a number.", param=f"{param}.pass_threshold")
        checked = validate(grader, param)
        check_templates(checked, param=param, namespaces=("item", "sample"), schema=schema)
        if threshold is not None:
            checked["pass_threshold"] = float(threshold)
        parsed.append(checked)
    names = [c["name"] for c in parsed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise InvalidRequest(
            f"Two testing criteria are named '{duplicate}'; names must differ.", param="testing_criteria"
        )
    return parsed
