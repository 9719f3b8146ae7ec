"""Client commands, through the official ``openai`` client against any openft server.

Every command takes ``--base-url`` (default ``http://127.0.0.1:8000/v1``) and reads the key
from ``OPENFT_API_KEY`` or ``OPENAI_API_KEY``; output is for people unless ``--json`` is given.
"""

from __future__ import annotations

import typer

from openft.cli.chat import chat
from openft.cli.completions import completions_app
from openft.cli.files import files_app
from openft.cli.follow import follow_job
from openft.cli.jobs import jobs_app
from openft.cli.options import make_client
from openft.cli.webhooks import webhooks_app

__all__ = ["follow_job", "make_client", "register"]


def register(app: typer.Typer) -> None:
    app.add_typer(files_app, name="files")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(webhooks_app, name="webhooks")
    app.add_typer(completions_app, name="completions")
    app.command()(chat)
