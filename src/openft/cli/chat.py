"""``openft chat MODEL``: an interactive chat in the terminal (streaming), or one question with ``--message``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from openft.cli.options import DEFAULT_URL, AsJson, BaseUrl, make_client, print_json

EXIT_WORDS = ("/exit", "/quit")


def stream_answer(client: Any, model: str, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> str:
    """Print the answer as it is generated; return it whole."""
    parts: list[str] = []
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text = chunk.choices[0].delta.content
            parts.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)


def chat(
    model: Annotated[str, typer.Argument(help="A base, fine-tuned or checkpoint model.")],
    question: Annotated[str | None, typer.Argument(help="Ask one question and exit.", show_default=False)] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Ask one question and exit.")] = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    base_url: BaseUrl = DEFAULT_URL,
    as_json: AsJson = False,
) -> None:
    """Chat with MODEL: one question (an argument or --message), else a conversation read from stdin
    (an empty line, /exit or end of input stops it)."""
    client = make_client(base_url)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    one_shot = message or question
    if one_shot is not None:
        messages = [*history, {"role": "user", "content": one_shot}]
        if as_json:
            reply = client.chat.completions.create(
                model=model, messages=messages, max_tokens=max_tokens, temperature=temperature
            )
            print_json(reply)
        else:
            stream_answer(client, model, messages, max_tokens, temperature)
        return
    interactive = sys.stdin.isatty()
    if interactive:
        typer.echo(f"Chatting with {model}; an empty line or /exit ends.", err=True)
    while True:
        if interactive:
            sys.stderr.write("you> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line or not line.strip() or line.strip() in EXIT_WORDS:
            return
        history.append({"role": "user", "content": line.strip()})
        answer = stream_answer(client, model, history, max_tokens, temperature)
        history.append({"role": "assistant", "content": answer})
