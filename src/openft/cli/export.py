"""``openft models export``: write a fine-tuned model for vLLM (``peft``), transformers (``merged``) or
llama.cpp / Ollama / LM Studio (``gguf``)."""

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
    gguf = "gguf"


class Quantization(StrEnum):
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"


def vllm_command(base_model: str, name: str, directory: Path) -> str:
    """The ``vllm serve`` command line that serves the peft export in ``directory`` as ``name``."""
    parts = ["vllm", "serve", base_model, "--enable-lora", "--lora-modules", f"{name}={directory}"]
    rank = json.loads((directory / "adapter_config.json").read_text()).get("r")
    if isinstance(rank, int) and rank > VLLM_DEFAULT_MAX_LORA_RANK:
        parts += ["--max-lora-rank", str(rank)]
    return shlex.join(parts)


def gguf_commands(model: str, gguf_file: Path) -> list[str]:
    """The command lines that chat with ``gguf_file`` in llama.cpp and create an Ollama model from it."""
    from openft.serving.export import model_slug

    modelfile = f"FROM {gguf_file}"
    return [
        shlex.join(["llama-cli", "-m", str(gguf_file), "-cnv"]),
        f"printf '%s\\n' {shlex.quote(modelfile)} > Modelfile && "
        + shlex.join(["ollama", "create", model_slug(model), "-f", "Modelfile"]),
    ]


def export(
    model: Annotated[str, typer.Argument(help="A fine-tuned model (ft:...) or one of its checkpoints.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write (must be empty or new).")],
    format: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="peft: LoRA adapter (vLLM --lora-modules); merged: full weights; gguf: one GGUF file (llama.cpp).",
        ),
    ] = Format.peft,
    quantization: Annotated[
        Quantization | None, typer.Option("--quantization", "-q", help="GGUF weights: f16 (default), bf16 or q8_0.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a previous export in OUTPUT.")] = False,
) -> None:
    """Export MODEL for vLLM, transformers, or llama.cpp / Ollama / LM Studio."""
    from openft.errors import OpenFTError
    from openft.serving.export import MARKER, export_model
    from openft.serving.registry import ModelRegistry
    from openft.settings import Settings
    from openft.store import open_store
    from openft.tenancy import Principal

    settings = Settings()
    settings.ensure_dirs()
    store = open_store(settings.sqlalchemy_url)
    try:
        served = ModelRegistry(settings, store).resolve(Principal(settings.organization_id), model)
        path = export_model(
            served,
            settings.models_dir,
            output,
            fmt=format.value,
            overwrite=overwrite,
            quantization=quantization.value if quantization else None,
        )
    except OpenFTError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    console.print(f"exported {model} ({format.value}) to {path}")
    if format is Format.peft:
        console.print("serve it with vLLM:")
        print(vllm_command(served.base.id, model, path))
    elif format is Format.gguf:
        gguf_file = path / json.loads((path / MARKER).read_text())["file"]
        console.print("chat with it in llama.cpp, or create an Ollama model from it (a one-line Modelfile):")
        for line in gguf_commands(model, gguf_file):
            print(line)
    else:
        console.print("load it with transformers: AutoModelForCausalLM.from_pretrained(...), or `vllm serve` it")
        print(path)


def register(models_app: typer.Typer) -> None:
    models_app.command("export")(export)
