"""What every client command shares: the server URL and key, ``--json``, and how objects are printed."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
DEFAULT_URL = "http://127.0.0.1:8000/v1"

BaseUrl = Annotated[str, typer.Option("--base-url", envvar="OPENFT_BASE_URL", help="The server's /v1 URL.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


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
