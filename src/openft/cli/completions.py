"""``openft completions export``: stored chat completions as a supervised fine-tuning file.

Each selected completion becomes one ``{"messages": [...]}`` line: its request's messages, then the
assistant answer it got. Selection is by model, metadata and creation time, as an eval's
``stored_completions`` source selects them::

    openft completions export --model openft/tiny-chat --metadata topic=geo > train.jsonl
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from openai import OpenAI

from openft.cli.options import DEFAULT_URL, BaseUrl, make_client

completions_app = typer.Typer(help="Stored chat completions (created with store: true).", no_args_is_help=True)


def _metadata(pairs: list[str] | None) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got '{pair}'", param_hint="--metadata")
        found[key] = value
    return found or None


def _message(message: Any) -> dict[str, Any]:
    return {"role": message.role, "content": message.content or ""}


def export_lines(
    client: OpenAI,
    *,
    model: str | None = None,
    metadata: dict[str, str] | None = None,
    created_after: int | None = None,
    created_before: int | None = None,
) -> Iterator[str]:
    """One JSONL training line per selected stored completion, oldest first."""
    filters: dict[str, Any] = {"order": "asc", "limit": 100}
    if model is not None:
        filters["model"] = model
    if metadata:
        filters["metadata"] = metadata
    for completion in client.chat.completions.list(**filters):
        if created_after is not None and completion.created < created_after:
            continue
        if created_before is not None and completion.created > created_before:
            continue
        answer = completion.choices[0].message if completion.choices else None
        if answer is None or not answer.content:
            continue
        request = [_message(m) for m in client.chat.completions.messages.list(completion.id, limit=100)]
        yield json.dumps({"messages": [*request, {"role": "assistant", "content": answer.content}]}) + "\n"


@completions_app.command("export")
def completions_export(
    model: Annotated[str | None, typer.Option(help="Only completions of this model.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE the metadata must have (repeatable).")] = None,
    created_after: Annotated[int | None, typer.Option(help="Only completions created at or after (epoch s).")] = None,
    created_before: Annotated[int | None, typer.Option(help="Only completions created at or before (epoch s).")] = None,
    base_url: BaseUrl = DEFAULT_URL,
) -> None:
    """Write the selected stored completions to stdout as a chat fine-tuning file (JSONL)."""
    client = make_client(base_url)
    count = 0
    for line in export_lines(
        client,
        model=model,
        metadata=_metadata(metadata),
        created_after=created_after,
        created_before=created_before,
    ):
        typer.echo(line, nl=False)
        count += 1
    typer.echo(f"{count} completions exported", err=True)
