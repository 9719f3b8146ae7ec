"""``openft models export``: write a fine-tuned model for vLLM (``peft``) or transformers (``merged``)."""

from __future__ import annotations

import json
import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)

VLLM_DEFAULT_MAX_LORA_RANK = 16


class Format(StrEnum):
    peft = "peft"
    merged = "merged"


def vllm_command(base_model: str, name: str, directory: Path) -> str:
    """The ``vllm serve`` command line that serves the peft export in ``directory`` as ``name``."""
    parts = ["vllm", "serve", base_model, "--enable-lora", "--lora-modules", f"{name}={directory}"]
    rank = json.loads((directory / "adapter_config.json").read_text()).get("r")
    if isinstance(rank, int) and rank > VLLM_DEFAULT_MAX_LORA_RANK:
        parts += ["--max-lora-rank", str(rank)]
    return shlex.join(parts)


def export(
    model: Annotated[str, typer.Argument(help="A fine-tuned model (ft:...) or one of its checkpoints.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write (must be empty or new).")],
    format: Annotated[
        Format, typer.Option("--format", "-f", help="peft: LoRA adapter (vLLM --lora-modules); merged: full weights.")
    ] = Format.peft,
    overwrite: Annotated[bool, typer.Option(help="Replace a previous export in OUTPUT.")] = False,
) -> None:
    """Export MODEL for vLLM or transformers."""
    from openft.errors import OpenFTError
    from openft.serving.export import export_model
    from openft.serving.registry import ModelRegistry
    from openft.settings import Settings
    from openft.store import open_store
    from openft.tenancy import Principal

    settings = Settings()
    settings.ensure_dirs()
    store = open_store(settings.sqlalchemy_url)
    try:
        served = ModelRegistry(settings, store).resolve(Principal(settings.organization_id), model)
        path = export_model(served, settings.models_dir, output, fmt=format.value, overwrite=overwrite)
    except OpenFTError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    console.print(f"exported {model} ({format.value}) to {path}")
    if format is Format.peft:
        console.print("serve it with vLLM:")
        print(vllm_command(served.base.id, model, path))
    else:
        console.print("load it with transformers: AutoModelForCausalLM.from_pretrained(...), or `vllm serve` it")
        print(path)


def register(models_app: typer.Typer) -> None:
    models_app.command("export")(export)
