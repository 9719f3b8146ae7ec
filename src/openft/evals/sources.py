"""A run's data source: checked when the run is created, read item by item when it executes.

``jsonl`` grades the items (and samples) as given; ``completions`` has a model answer each item, its
chat rendered from ``input_messages`` (a template over ``item``, or an ``item_reference`` to a list of
messages in the item), then grades the answer. Items come from ``file_content``, a ``file_id`` (one
``{"item": {...}}`` object per line) or ``stored_completions`` (the organization's stored chat
completions, selected by model, metadata and time window).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openft.errors import InvalidRequest
from openft.evals import spec
from openft.graders.template import TemplateError, lookup, make_sample, render
from openft.serving.backend import SamplingParams
from openft.store.completions import CompletionFilter, StoredCompletionRow

MAX_FILE_CONTENT_ITEMS = 10_000


@dataclass(frozen=True)
class SourceItem:
    """One data source item: its index, the item, a given sample (jsonl), or why it cannot be graded."""

    index: int
    item: dict[str, Any]
    sample: dict[str, Any] | None = None
    error: str | None = None


def stored_item(row: StoredCompletionRow) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``item`` a stored completion gives an eval, and the ``sample`` of its stored answer."""
    choices = row.completion.get("choices") or [{}]
    text = (choices[0].get("message") or {}).get("content") or ""
    item = {
        "id": row.id,
        "model": row.model,
        "input": row.request.get("messages", []),
        "output_text": text,
        "metadata": row.metadata or {},
    }
    sample = {**make_sample(text), "model": row.model}
    return item, sample


def _source(data_source: dict[str, Any]) -> dict[str, Any]:
    source = data_source.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest("data_source.source must be an object.", param="data_source.source")
    return source


def check(
    data_source: Any,
    *,
    schema: dict[str, Any],
    file_exists: Callable[[str], bool],
    model_exists: Callable[[str], bool],
) -> str | None:
    """Check a run's ``data_source``; its model (None for jsonl).

    Raises:
        InvalidRequest: an unknown type, a malformed source, a file_content item that does not match the
            eval's item schema, a file the caller does not have, a model the caller cannot use, a template
            that is malformed or names something an item cannot have.
    """
    if not isinstance(data_source, dict):
        raise InvalidRequest("data_source must be an object.", param="data_source")
    kind = data_source.get("type")
    if kind not in ("jsonl", "completions"):
        raise InvalidRequest(
            f"Unknown data_source type '{kind}'; expected jsonl or completions.", param="data_source.type"
        )
    source = _source(data_source)
    _check_source(source, kind, schema, file_exists)
    if kind == "jsonl":
        return None
    model = data_source.get("model")
    if model is None and source.get("type") != "stored_completions":
        raise InvalidRequest("A completions data source needs a model.", param="data_source.model")
    if model is not None and (not isinstance(model, str) or not model_exists(model)):
        raise InvalidRequest(
            f"The model `{model}` does not exist or you do not have access to it.",
            param="data_source.model",
            code="model_not_found",
        )
    _check_input_messages(data_source.get("input_messages"), source, schema)
    sampling(data_source.get("sampling_params"))
    return model if isinstance(model, str) else None


def _check_source(
    source: dict[str, Any], kind: str, schema: dict[str, Any], file_exists: Callable[[str], bool]
) -> None:
    stype = source.get("type")
    allowed = ("file_content", "file_id") + (("stored_completions",) if kind == "completions" else ())
    if stype not in allowed:
        raise InvalidRequest(
            f"Unknown source type '{stype}'; expected one of {', '.join(allowed)}.", param="data_source.source.type"
        )
    if stype == "file_id":
        if not isinstance(source.get("id"), str) or not file_exists(source["id"]):
            raise InvalidRequest(f"No such File object: {source.get('id')}", param="data_source.source.id")
    elif stype == "file_content":
        content = source.get("content")
        if not isinstance(content, list) or not content or len(content) > MAX_FILE_CONTENT_ITEMS:
            raise InvalidRequest(
                f"content must be a list of 1 to {MAX_FILE_CONTENT_ITEMS} items.", param="data_source.source.content"
            )
        for index, entry in enumerate(content):
            param = f"data_source.source.content[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("item"), dict):
                raise InvalidRequest('Each content entry must be {"item": {...}}.', param=param)
            problem = spec.item_errors(schema, entry["item"])
            if problem is not None:
                raise InvalidRequest(f"Item {index} does not match the eval's item_schema: {problem}", param=param)
    else:
        spec.check_metadata(source.get("metadata"), param="data_source.source.metadata")


def _check_input_messages(input_messages: Any, source: dict[str, Any], schema: dict[str, Any]) -> None:
    param = "data_source.input_messages"
    if input_messages is None:
        if source.get("type") == "stored_completions":
            return
        raise InvalidRequest("A completions data source needs input_messages.", param=param)
    kind = input_messages.get("type") if isinstance(input_messages, dict) else None
    if kind == "template":
        template = input_messages.get("template")
        if not isinstance(template, list) or not template:
            raise InvalidRequest("input_messages.template must be a non-empty list of messages.", param=param)
        for message in template:
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise InvalidRequest("Each template message needs a role and content.", param=param)
        spec.check_templates(template, param=param, namespaces=("item",), schema=schema)
    elif kind == "item_reference":
        reference = input_messages.get("item_reference")
        if not isinstance(reference, str) or not reference.startswith("item."):
            raise InvalidRequest("item_reference must be a path in the item, like item.input.", param=param)
        spec.check_templates("{{" + reference + "}}", param=param, namespaces=("item",), schema=schema)
    else:
        raise InvalidRequest("input_messages must be of type template or item_reference.", param=param)


def sampling(params: Any) -> SamplingParams:
    """Serving parameters from a data source's ``sampling_params``.

    Raises:
        InvalidRequest: a value out of OpenAI's range.
    """
    params = params or {}
    if not isinstance(params, dict):
        raise InvalidRequest("sampling_params must be an object.", param="data_source.sampling_params")

    def number(name: str, low: float, high: float | None) -> float | None:
        value = params.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low or (high and value > high):
            raise InvalidRequest(f"{name} is out of range.", param=f"data_source.sampling_params.{name}")
        return float(value)

    temperature, top_p = number("temperature", 0, 2), number("top_p", 0, 1)
    max_tokens = number("max_completion_tokens", 1, None)
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidRequest("seed must be an integer.", param="data_source.sampling_params.seed")
    response_format = params.get("response_format") or {}
    fmt = response_format.get("type", "text") if isinstance(response_format, dict) else None
    if fmt not in ("text", "json_object", "json_schema"):
        raise InvalidRequest(f"Unknown response_format '{fmt}'.", param="data_source.sampling_params.response_format")
    return SamplingParams(
        max_tokens=int(max_tokens) if max_tokens else None,
        temperature=1.0 if temperature is None else temperature,
        top_p=top_p or 1.0,
        seed=seed,
        response_format="text" if fmt == "text" else "json_object",
    )


def _content_text(content: Any, item: dict[str, Any]) -> str:
    if isinstance(content, str):
        return render(content, item, None)
    parts = content if isinstance(content, list) else [content]
    texts = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type", "input_text") not in ("input_text", "output_text", "text"):
            raise TemplateError("only text content is supported in input messages")
        texts.append(render(str(part.get("text", "")), item, None))
    return "\n".join(texts)


def messages(input_messages: dict[str, Any] | None, item: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat a model answers for ``item``.

    Raises:
        TemplateError: a variable the item does not have, or a reference that is not a list of messages.
    """
    if input_messages is None:
        input_messages = {"type": "item_reference", "item_reference": "item.input"}
    if input_messages["type"] == "item_reference":
        value = lookup(input_messages["item_reference"], {"item": item})
        if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
            raise TemplateError(f"{input_messages['item_reference']} is not a list of messages")
        return [{"role": m["role"], "content": _content_text(m.get("content") or "", item)} for m in value]
    return [{"role": m["role"], "content": _content_text(m["content"], item)} for m in input_messages["template"]]


def read_file_items(path: Path, schema: dict[str, Any]) -> Iterator[SourceItem]:
    """The items of a JSONL file, one per non-empty line; a line that is not an item is an error item."""
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        index = 0
        for line in lines:
            if not line.strip():
                continue
            yield _file_item(index, line, schema)
            index += 1


def _file_item(index: int, line: str, schema: dict[str, Any]) -> SourceItem:
    try:
        entry = json.loads(line)
    except ValueError:
        return SourceItem(index, {}, error=f"line {index + 1} is not JSON")
    item = entry.get("item") if isinstance(entry, dict) else None
    if not isinstance(item, dict):
        return SourceItem(index, {}, error=f'line {index + 1} is not {{"item": {{...}}}}')
    problem = spec.item_errors(schema, item)
    sample = entry.get("sample") if isinstance(entry.get("sample"), dict) else None
    error = None if problem is None else f"the item does not match the eval's item_schema: {problem}"
    return SourceItem(index, item, sample, error)


def items(
    data_source: dict[str, Any],
    schema: dict[str, Any],
    *,
    open_file: Callable[[str], Path],
    select_stored: Callable[[CompletionFilter, int | None], list[StoredCompletionRow]],
) -> Iterator[SourceItem]:
    """Every item of the data source, in order.

    Raises:
        NotFound: the source file is gone.
    """
    source = data_source["source"]
    if source["type"] == "file_content":
        for index, entry in enumerate(source["content"]):
            yield SourceItem(index, entry["item"], entry.get("sample"))
    elif source["type"] == "file_id":
        yield from read_file_items(open_file(source["id"]), schema)
    else:
        where = CompletionFilter(
            model=source.get("model"),
            metadata=source.get("metadata"),
            created_after=source.get("created_after"),
            created_before=source.get("created_before"),
        )
        for index, row in enumerate(select_stored(where, source.get("limit"))):
            item, sample = stored_item(row)
            yield SourceItem(index, item, sample)
