"""``openft keys create|list|revoke``: API keys, managed on the server's machine (they read the database).

    openft keys create --organization org-acme --project proj_web --name ci
        prints the new key (``sk-…``) on stdout, once; only its hash is stored
    openft keys list [--organization ORG] [--all]
    openft keys revoke key_…

Once a key exists, every ``/v1`` request needs one.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openft.cli.options import console as stdout
from openft.cli.options import id_column
from openft.errors import OpenFTError
from openft.settings import Settings
from openft.store import open_store
from openft.store.keys import KeyStore

keys_app = typer.Typer(help="API keys (once one exists, every request needs a key).", no_args_is_help=True)
console = Console(stderr=True)


def _keys() -> KeyStore:
    settings = Settings()
    settings.ensure_dirs()
    return KeyStore(open_store(settings.sqlalchemy_url))


@keys_app.command("create")
def create(
    organization: Annotated[str, typer.Option(help="The organization the key acts for, e.g. org-acme.")],
    project: Annotated[str | None, typer.Option(help="The project the key belongs to, e.g. proj_web.")] = None,
    name: Annotated[str | None, typer.Option(help="A name to recognise the key by.")] = None,
) -> None:
    """Create a key and print it on stdout; it cannot be shown again."""
    try:
        row, key = _keys().create(organization, project, name)
    except OpenFTError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(2) from exc
    console.print(f"created {row.id} for {row.organization_id}" + (f"/{row.project_id}" if row.project_id else ""))
    typer.echo(key)


@keys_app.command("list")
def list_keys(
    organization: Annotated[str | None, typer.Option(help="Only this organization's keys.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List keys (never the keys themselves: their last four characters)."""
    table = Table(id_column(), "organization", "project", "name", "key", "created", "revoked")
    for row in _keys().list(organization, include_revoked=all_):
        table.add_row(
            row.id,
            row.organization_id,
            row.project_id or "",
            row.name or "",
            row.redacted,
            str(row.created_at),
            str(row.revoked_at or ""),
        )
    stdout.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id, key_… (see openft keys list).")]) -> None:
    """Revoke a key; requests with it fail from now on."""
    try:
        row = _keys().revoke(key_id)
    except OpenFTError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    console.print(f"revoked {row.id} ({row.redacted})")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
