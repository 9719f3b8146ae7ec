"""What every client command shares: the server URL and key, ``--json``, and how objects are printed."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column

# Piped output is read by scripts and tests: never squeeze it to 80 columns, where ids would be cut.
console = Console(width=None if sys.stdout.isatty() else 240)
DEFAULT_URL = "http://127.0.0.1:8000/v1"

BaseUrl = Annotated[str, typer.Option("--base-url", envvar="OPENFT_BASE_URL", help="The server's /v1 URL.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def id_column(header: str = "id") -> Column:
    """A table column for ids: people copy them, so they are never wrapped or cut, even on a narrow terminal."""
    return Column(header, no_wrap=True, min_width=30)


def api_key() -> str:
    """``OPENFT_API_KEY``, else ``OPENAI_API_KEY``; a loopback server with no keys accepts any."""
    return os.environ.get("OPENFT_API_KEY") or os.environ.get("OPENAI_API_KEY") or "local"


def make_client(base_url: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key())


def plain(obj: Any) -> Any:
    """A JSON-ready copy of a wire object (pydantic models included)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [plain(o) for o in obj]
    return obj


def print_json(obj: Any) -> None:
    """One JSON document on stdout, unstyled, so scripts can parse it."""
    typer.echo(json.dumps(plain(obj), indent=2, sort_keys=True))
