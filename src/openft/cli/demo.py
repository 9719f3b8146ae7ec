"""``openft demo``: the whole loop on the embedded default, as a new user would run it.

Starts ``openft serve`` on a free loopback port (unless ``--base-url`` points at a running
server), asks SmolLM2-135M-Instruct the example questions, fine-tunes it on the bundled
pirate data through the official ``openai`` client, and asks the fine-tuned model again.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from openft.cli.client import follow_job, make_client
from openft.models.catalog import SMOLLM2
from openft.settings import Settings

console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "openft", "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            console.print(f"[red]openft serve exited with code {process.returncode}; see {log_path}[/]")
            raise typer.Exit(1)
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, f"{url}/v1"
        except httpx.HTTPError:
            time.sleep(0.3)
    process.terminate()
    raise RuntimeError("openft serve did not become ready within 120 s")


def _answers(client: Any, model: str, prompts: list[str]) -> list[str]:
    out = []
    for prompt in prompts:
        reply = client.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": prompt},
            ],
            max_tokens=60,
            temperature=0,
        )
        out.append((reply.choices[0].message.content or "").strip())
    return out


def demo(
    base_url: Annotated[str | None, typer.Option(help="Use this running server instead of starting one.")] = None,
    model: Annotated[str, typer.Option(help="Base model to fine-tune.")] = SMOLLM2,
) -> None:
    """Fine-tune SmolLM2-135M-Instruct on the bundled example data and compare answers."""
    examples = resources.files("openft") / "examples"
    prompts: list[str] = json.loads((examples / "prompts.json").read_text())
    server = None
    if base_url is None:
        log_path = Settings().home / "demo-server.log"
        console.print(f"[bold]Starting openft serve on loopback[/] (its log: {log_path})")
        server, base_url = _start_server(log_path)
    try:
        client = make_client(base_url)
        console.print(f"[bold]Asking {model} before fine-tuning...[/]")
        before = _answers(client, model, prompts)
        with (examples / "pirate.jsonl").open("rb") as fh:
            train = client.files.create(file=("pirate.jsonl", fh.read()), purpose="fine-tune")
        with (examples / "pirate_validation.jsonl").open("rb") as fh:
            valid = client.files.create(file=("pirate_validation.jsonl", fh.read()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=model, training_file=train.id, validation_file=valid.id, suffix="pirate", seed=7
        )
        console.print(f"[bold]Created {job.id}; following it:[/]")
        job = follow_job(client, job.id)
        if job.status != "succeeded":
            console.print(f"[red]Job {job.status}: {job.error}[/]")
            raise typer.Exit(1)
        console.print(
            f"[bold]Fine-tuned model:[/] {job.fine_tuned_model}  "
            f"(trained tokens: {job.trained_tokens}, hyperparameters: {job.hyperparameters.model_dump()})"
        )
        after = _answers(client, job.fine_tuned_model, prompts)
        console.rule("Answers before and after fine-tuning")
        for question, old, new in zip(prompts, before, after, strict=True):
            console.print(f"[bold]Q: {question}[/]")
            console.print(f"  [dim]before:[/] {old}")
            console.print(f"  [green]after:[/]  {new}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def register(app: typer.Typer) -> None:
    app.command()(demo)
