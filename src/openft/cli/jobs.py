"""``openft jobs create|estimate|list|get|cancel|pause|resume|events|checkpoints|follow``."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from openft.cli.estimate import jobs_estimate
from openft.cli.follow import follow_job
from openft.cli.options import DEFAULT_URL, AsJson, BaseUrl, console, id_column, make_client, print_json

jobs_app = typer.Typer(help="Fine-tuning jobs on a server.", no_args_is_help=True)
jobs_app.command("estimate")(jobs_estimate)


def _age(created_at: int) -> str:
    seconds = max(0, int(time.time()) - created_at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _integrations(
    wandb_project: str | None,
    wandb_entity: str | None,
    wandb_name: str | None,
    wandb_tags: list[str] | None,
    mlflow_uri: str | None,
    mlflow_experiment: str | None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if wandb_project:
        wandb = {"project": wandb_project, "entity": wandb_entity, "name": wandb_name, "tags": wandb_tags or None}
        out.append({"type": "wandb", "wandb": {k: v for k, v in wandb.items() if v is not None}})
    if mlflow_uri or mlflow_experiment:
        mlflow = {"tracking_uri": mlflow_uri, "experiment_name": mlflow_experiment}
        out.append({"type": "mlflow", "mlflow": {k: v for k, v in mlflow.items() if v is not None}})
    return out


@jobs_app.command("create")
def jobs_create(
    model: str,
    training_file: str,
    validation_file: str | None = None,
    suffix: str | None = None,
    seed: int | None = None,
    n_epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate_multiplier: float | None = None,
    method: Annotated[str, typer.Option(help="supervised, dpo or reinforcement.")] = "supervised",
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    wandb_project: Annotated[str | None, typer.Option(help="Log the job's metrics to this W&B project.")] = None,
    wandb_entity: str | None = None,
    wandb_name: str | None = None,
    wandb_tag: Annotated[list[str] | None, typer.Option(help="A W&B tag, repeatable.")] = None,
    mlflow_tracking_uri: Annotated[str | None, typer.Option(help="Log the job's metrics to MLflow.")] = None,
    mlflow_experiment: str | None = None,
    base_url: BaseUrl = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Create a fine-tuning job; prints its id."""
    hyper = {"n_epochs": n_epochs, "batch_size": batch_size, "learning_rate_multiplier": learning_rate_multiplier}
    extra: dict[str, Any] = {}
    integrations = _integrations(
        wandb_project, wandb_entity, wandb_name, wandb_tag, mlflow_tracking_uri, mlflow_experiment
    )
    if integrations:
        extra["integrations"] = integrations
    if metadata:
        pairs = [m.split("=", 1) for m in metadata]
        if any(len(p) != 2 for p in pairs):
            raise typer.BadParameter("expected KEY=VALUE", param_hint="--metadata")
        extra["metadata"] = dict(pairs)
    job = make_client(base_url).fine_tuning.jobs.create(
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        suffix=suffix,
        seed=seed,
        method={"type": method, method: {"hyperparameters": {k: v for k, v in hyper.items() if v is not None}}},
        **extra,
    )
    if as_json:
        print_json(job)
    else:
        typer.echo(job.id)


@jobs_app.command("list")
def jobs_list(limit: int = 20, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List jobs, newest first."""
    jobs = make_client(base_url).fine_tuning.jobs.list(limit=limit).data
    if as_json:
        print_json(jobs)
        return
    table = Table(id_column(), "status", "model", "age", "fine-tuned model", box=None)
    for job in jobs:
        table.add_row(job.id, job.status, job.model, _age(job.created_at), job.fine_tuned_model or "")
    console.print(table)


@jobs_app.command("get")
def jobs_get(job_id: str, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show one job."""
    job = make_client(base_url).fine_tuning.jobs.retrieve(job_id)
    if as_json:
        print_json(job)
        return
    table = Table(box=None, show_header=False)
    hp = job.hyperparameters
    for name, value in (
        ("id", job.id),
        ("status", job.status),
        ("model", job.model),
        ("fine-tuned model", job.fine_tuned_model),
        ("created", f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.created_at))} ({_age(job.created_at)})"),
        ("training file", job.training_file),
        ("validation file", job.validation_file),
        ("hyperparameters", f"n_epochs={hp.n_epochs} batch_size={hp.batch_size} lr_mult={hp.learning_rate_multiplier}"),
        ("seed", job.seed),
        ("trained tokens", job.trained_tokens),
        ("metadata", job.metadata),
        ("error", job.error.message if job.error else None),
    ):
        if value is not None:
            table.add_row(f"[bold]{name}", str(value))
    console.print(table)


def _status_command(verb: str) -> Any:
    def command(job_id: str, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
        job = getattr(make_client(base_url).fine_tuning.jobs, verb)(job_id)
        if as_json:
            print_json(job)
        else:
            typer.echo(f"{job.id}: {job.status}")

    command.__doc__ = f"{verb.capitalize()} a job."
    return command


for _verb in ("cancel", "pause", "resume"):
    jobs_app.command(_verb)(_status_command(_verb))


@jobs_app.command("events")
def jobs_events(job_id: str, limit: int = 50, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show a job's latest events, oldest first."""
    events = list(reversed(make_client(base_url).fine_tuning.jobs.list_events(job_id, limit=limit).data))
    if as_json:
        print_json(events)
        return
    for e in events:
        stamp = time.strftime("%H:%M:%S", time.localtime(e.created_at))
        console.print(f"[dim]{stamp}[/] {e.level:<5} {e.message}", highlight=False)


@jobs_app.command("checkpoints")
def jobs_checkpoints(job_id: str, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List a job's checkpoints."""
    checkpoints = make_client(base_url).fine_tuning.jobs.checkpoints.list(job_id).data
    if as_json:
        print_json(checkpoints)
        return
    table = Table("step", "model", "train loss", "valid loss", box=None)
    for c in checkpoints:
        m = c.metrics
        valid = getattr(m, "full_valid_loss", None) or getattr(m, "valid_loss", None)
        train = getattr(m, "train_loss", None)
        table.add_row(
            str(c.step_number),
            c.fine_tuned_model_checkpoint,
            f"{train:.3f}" if train else "-",
            f"{valid:.3f}" if valid else "-",
        )
    console.print(table)


@jobs_app.command("follow")
def jobs_follow(job_id: str, poll: float = 1.0, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Follow a job with a live progress bar until it ends; exit 0 when it succeeds, 1 otherwise."""
    job = follow_job(make_client(base_url), job_id, poll=poll)
    if as_json:
        print_json(job)
    else:
        typer.echo(
            f"{job.id}: {job.status} {job.fine_tuned_model or (job.error.message if job.error else '')}".rstrip()
        )
    raise typer.Exit(0 if job.status == "succeeded" else 1)
