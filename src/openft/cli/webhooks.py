"""``openft webhooks add|list|delete|deliveries``: the organization's webhook endpoints on a server."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from openft.cli.options import DEFAULT_URL, AsJson, BaseUrl, console, id_column, make_client, print_json

webhooks_app = typer.Typer(help="Webhook endpoints of your organization.", no_args_is_help=True)
PATH = "/organization/webhooks"


@webhooks_app.command("add")
def webhooks_add(
    url: str,
    event: Annotated[list[str] | None, typer.Option(help="An event type to send (repeatable); default all.")] = None,
    base_url: BaseUrl = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Add an endpoint; prints its id and its signing secret (whsec_...), shown only this once."""
    body: dict[str, Any] = {"url": url, **({"events": event} if event else {})}
    endpoint = make_client(base_url).post(PATH, body=body, cast_to=object)
    if as_json:
        print_json(endpoint)
    else:
        typer.echo(f"{endpoint['id']}\n{endpoint['secret']}")


@webhooks_app.command("list")
def webhooks_list(base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List endpoints."""
    endpoints = make_client(base_url).get(PATH, cast_to=object)["data"]
    if as_json:
        print_json(endpoints)
        return
    table = Table(id_column(), "url", "events", box=None)
    for e in endpoints:
        table.add_row(e["id"], e["url"], ", ".join(e["events"]))
    console.print(table)


@webhooks_app.command("delete")
def webhooks_delete(endpoint_id: str, base_url: BaseUrl = DEFAULT_URL) -> None:
    """Delete an endpoint (its pending deliveries are dropped)."""
    make_client(base_url).delete(f"{PATH}/{endpoint_id}", cast_to=object)
    typer.echo(f"{endpoint_id}: deleted")


@webhooks_app.command("deliveries")
def webhooks_deliveries(endpoint_id: str, base_url: BaseUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show an endpoint's delivery attempts, newest first."""
    deliveries = make_client(base_url).get(f"{PATH}/{endpoint_id}/deliveries", cast_to=object)["data"]
    if as_json:
        print_json(deliveries)
        return
    table = Table("event", "type", "job", "status", "attempts", "last", box=None)
    for d in deliveries:
        last = d["last_error"] or (f"HTTP {d['last_status_code']}" if d["last_status_code"] else "")
        if d["status"] == "pending" and d["next_attempt_at"]:
            last += f" (next in {max(0, d['next_attempt_at'] - int(time.time()))}s)"
        table.add_row(d["event_id"], d["event_type"], d["payload"]["data"]["id"], d["status"], str(d["attempts"]), last)
    console.print(table)
