"""The ``openft`` command: local commands (serve, worker, db, models add, demo) and client
commands that talk to a server through the official ``openai`` client."""

from __future__ import annotations

import typer

from openft.cli import client, demo, keys, local

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="openft: OpenAI-compatible fine-tuning, self-hosted."
)
local.register(app)
demo.register(app)
client.register(app)
keys.register(app)


def main() -> None:
    app()
