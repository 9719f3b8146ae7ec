"""``openft jobs estimate MODEL FILE_ID``: what a job would train and cost on a server, without creating it.

Prints the server's ``fine_tuning.job.estimate`` (``POST /v1/fine_tuning/jobs/estimate``): examples and
tokens per file, the resolved hyperparameters, steps, trained tokens, peak memory against the server's
limit and the expected running time. Exits 1 when the job would not fit in memory, 2 when the server
refuses the request (the message names the line of a file the job would fail on).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from openft.cli.options import DEFAULT_URL, AsJson, BaseUrl, make_client, print_json

GIB = 1024**3


def render_estimate(est: dict[str, Any]) -> list[str]:
    """The human-readable estimate, one string per line."""
    out = [f"{est['model']}: {est['method']['type']} ({est['training_type']})"]
    for key in ("training_file", "validation_file"):
        f = est.get(key)
        if not f:
            continue
        line = f"{key.replace('_', ' ')} {f['id']}: {f['n_examples']} examples, {f['n_tokens']:,} tokens"
        if f["n_trained_examples"] != f["n_examples"]:
            line += f", {f['n_trained_examples']} trained on"
        if f["n_truncated"]:
            line += f", {f['n_truncated']} truncated (lines {', '.join(map(str, f['truncated_lines']))})"
        out.append(line)
    hp = ", ".join(f"{k}={v}" for k, v in est["method"][est["method"]["type"]]["hyperparameters"].items())
    out.append(f"hyperparameters: {hp}")
    exact = "" if est["trained_tokens_exact"] else " at most"
    out.append(f"steps: {est['n_steps']:,}; trained tokens:{exact} {est['trained_tokens']:,}")
    memory = f"peak memory: {est['peak_memory_bytes'] / GIB:.2f} GiB of {est['memory_limit_bytes'] / GIB:.1f} GiB"
    out.append(f"{memory} on {est['device']}: " + ("fits" if est["fits"] else f"DOES NOT FIT. {est['reason']}"))
    if est["estimated_seconds"] is None:
        out.append("time: unknown (no throughput measured on this server for this model, method and device)")
    else:
        rate = f"{est['tokens_per_second']:,.0f} tokens/s from {est['estimated_seconds_source'].replace('_', ' ')}"
        out.append(f"time: about {est['estimated_seconds']:,.0f} s ({rate})")
    return out


def jobs_estimate(
    model: str,
    training_file: str,
    validation_file: str | None = None,
    n_epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate_multiplier: float | None = None,
    method: Annotated[str, typer.Option(help="supervised, dpo or reinforcement.")] = "supervised",
    training_type: Annotated[str | None, typer.Option(help="lora (default) or full.")] = None,
    base_url: BaseUrl = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Estimate a job without creating it: tokens, steps, peak memory and time on this server."""
    hyper = {"n_epochs": n_epochs, "batch_size": batch_size, "learning_rate_multiplier": learning_rate_multiplier}
    section: dict[str, Any] = {"hyperparameters": {k: v for k, v in hyper.items() if v is not None}}
    if training_type:
        section["openft"] = {"training_type": training_type}
    body: dict[str, Any] = {"model": model, "training_file": training_file, "method": {"type": method, method: section}}
    if validation_file:
        body["validation_file"] = validation_file
    from openai import APIStatusError

    try:
        est = make_client(base_url).post("/fine_tuning/jobs/estimate", body=body, cast_to=object)
    except APIStatusError as exc:  # a file the job would fail on: its line, not a traceback
        error = exc.body if isinstance(exc.body, dict) else {}
        typer.echo(f"error: {error.get('message') or exc.message}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        print_json(est)
    else:
        for line in render_estimate(est):
            typer.echo(line)
    raise typer.Exit(0 if est["fits"] else 1)
