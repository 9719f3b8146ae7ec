"""Client commands, through the official ``openai`` client against any openft server.

Every command takes ``--base-url`` (default ``http://127.0.0.1:8000/v1``) and reads the key
from ``OPENFT_API_KEY`` or ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

console = Console()
files_app = typer.Typer(help="Files on a server.", no_args_is_help=True)
jobs_app = typer.Typer(help="Fine-tuning jobs on a server.", no_args_is_help=True)

BaseUrl = Annotated[str, typer.Option("--base-url", envvar="OPENFT_BASE_URL", help="The server's /v1 URL.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DEFAULT_URL = "http://127.0.0.1:8000/v1"
TERMINAL = ("succeeded", "failed", "cancelled")


def make_client(base_url: str) -> Any:
    from openai import OpenAI

    key = os.environ.get("OPENFT_API_KEY") or os.environ.get("OPENAI_API_KEY") or "local"
    return OpenAI(base_url=base_url, api_key=key)


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(obj.model_dump() if hasattr(obj, "model_dump") else obj))
    else:
        console.print(obj)


@files_app.command("upload")
def files_upload(
    path: Path, purpose: str = "fine-tune", base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False
) -> None:
    """Upload a file."""
    with path.open("rb") as fh:
        f = make_client(base_url).files.create(file=fh, purpose=purpose)  # type: ignore[arg-type]
    _print(f if as_json else f.id, as_json)


@files_app.command("list")
def files_list(base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List files."""
    for f in make_client(base_url).files.list():
        _print(f if as_json else f"{f.id}  {f.purpose:<18} {f.bytes:>10}  {f.filename}", as_json)


@jobs_app.command("create")
def jobs_create(
    model: str,
    training_file: str,
    validation_file: str | None = None,
    suffix: str | None = None,
    seed: int | None = None,
    n_epochs: int | None = None,
    base_url: BaseUrl = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Create a supervised fine-tuning job."""
    hyper: dict[str, Any] = {"n_epochs": n_epochs} if n_epochs else {}
    job = make_client(base_url).fine_tuning.jobs.create(
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        suffix=suffix,
        seed=seed,
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
    )
    _print(job if as_json else job.id, as_json)


@jobs_app.command("list")
def jobs_list(base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List jobs, newest first."""
    for job in make_client(base_url).fine_tuning.jobs.list():
        _print(job if as_json else f"{job.id}  {job.status:<16} {job.model}  {job.fine_tuned_model or ''}", as_json)


@jobs_app.command("get")
def jobs_get(job_id: str, base_url: BaseUrl = DEFAULT_URL) -> None:
    """Show one job."""
    _print(make_client(base_url).fine_tuning.jobs.retrieve(job_id), True)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, base_url: BaseUrl = DEFAULT_URL) -> None:
    """Cancel a job."""
    console.print(make_client(base_url).fine_tuning.jobs.cancel(job_id).status)


@jobs_app.command("events")
def jobs_events(job_id: str, limit: int = 50, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show a job's events, oldest first."""
    events = list(make_client(base_url).fine_tuning.jobs.list_events(job_id, limit=limit))
    for e in reversed(events):
        _print(
            e if as_json else f"{time.strftime('%H:%M:%S', time.localtime(e.created_at))} {e.level:<5} {e.message}",
            as_json,
        )


@jobs_app.command("checkpoints")
def jobs_checkpoints(job_id: str, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List a job's checkpoints."""
    for c in make_client(base_url).fine_tuning.jobs.checkpoints.list(job_id):
        _print(c if as_json else f"step {c.step_number:>5}  {c.fine_tuned_model_checkpoint}  {c.metrics}", as_json)


def follow_job(client: Any, job_id: str, *, poll: float = 1.0, echo: Any = console.print) -> Any:
    """Print a job's events as they arrive with a progress bar; return the finished job."""
    seen: set[str] = set()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("validating", total=None)
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
            for e in reversed(events):
                if e.id in seen:
                    continue
                seen.add(e.id)
                if e.type == "metrics" and e.data:
                    progress.update(
                        task,
                        description=f"loss {e.data.get('train_loss', 0):.3f}",
                        completed=e.data.get("step", 0),
                        total=e.data.get("total_steps"),
                    )
                    if e.data.get("step") != e.data.get("total_steps") and "full_valid_loss" not in e.data:
                        continue
                progress.console.print(
                    f"  [dim]{time.strftime('%H:%M:%S', time.localtime(e.created_at))}[/] {e.message}"
                )
            if job.status in TERMINAL:
                return job
            if job.status != "running":
                progress.update(task, description=job.status)
            time.sleep(poll)


@jobs_app.command("follow")
def jobs_follow(job_id: str, base_url: BaseUrl = DEFAULT_URL) -> None:
    """Follow a job to its end; exit 0 when it succeeds, 1 otherwise."""
    job = follow_job(make_client(base_url), job_id)
    typer.echo(f"{job.id}: {job.status} {job.fine_tuned_model or ''}".rstrip())
    raise typer.Exit(0 if job.status == "succeeded" else 1)


def chat(model: str, message: str, max_tokens: int = 128, base_url: BaseUrl = DEFAULT_URL) -> None:
    """Ask MODEL one question and print its answer."""
    reply = make_client(base_url).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": message}],
        max_tokens=max_tokens,
        temperature=0,
    )
    console.print(reply.choices[0].message.content)


def register(app: typer.Typer) -> None:
    app.add_typer(files_app, name="files")
    app.add_typer(jobs_app, name="jobs")
    app.command()(chat)
