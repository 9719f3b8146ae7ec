"""``openft files upload|list|validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openft.cli.options import DEFAULT_URL, AsJson, BaseUrl, console, id_column, make_client, print_json
from openft.cli.validate import render_report, validation_report

files_app = typer.Typer(help="Files on a server, and checking a file before upload.", no_args_is_help=True)


@files_app.command("upload")
def files_upload(
    path: Path, purpose: str = "fine-tune", base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False
) -> None:
    """Upload a file; prints its id."""
    with path.open("rb") as fh:
        f = make_client(base_url).files.create(file=fh, purpose=purpose)
    if as_json:
        print_json(f)
    else:
        typer.echo(f.id)


@files_app.command("list")
def files_list(base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List files, newest first."""
    files = list(make_client(base_url).files.list())
    if as_json:
        print_json(files)
        return
    table = Table(id_column(), "purpose", "bytes", "filename", box=None)
    for f in files:
        table.add_row(f.id, f.purpose, f"{f.bytes:,}", f.filename)
    console.print(table)


@files_app.command("validate")
def files_validate(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The JSONL file to check.")],
    model: Annotated[str, typer.Option(help="The base model whose tokenizer counts tokens.")] = "openft/tiny-chat",
    method: Annotated[str, typer.Option(help="supervised, dpo or reinforcement.")] = "supervised",
    n_epochs: Annotated[int | None, typer.Option(help="Epochs to plan for; default: the auto rule.")] = None,
    as_json: AsJson = False,
) -> None:
    """Check a training file locally before uploading it: format errors by line, token counts with the
    model's tokenizer, examples over its context, and the tokens a job would train on. Exits 1 when
    the file has errors."""
    if method not in ("supervised", "dpo", "reinforcement"):
        raise typer.BadParameter("expected supervised, dpo or reinforcement", param_hint="--method")
    report = validation_report(path, model, method, n_epochs=n_epochs)
    if as_json:
        print_json(report)
    else:
        for line in render_report(report):
            typer.echo(line)
    raise typer.Exit(0 if report["ok"] else 1)
