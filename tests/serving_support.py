"""Helpers of the serving tests: the app on a loopback port, raw requests a test can hang up, and a
second base model (tiny-chat with other weights)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from openft.models.catalog import TINY_CHAT, find_base_model


@contextmanager
def loopback_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port (in a thread); yields its ``/v1`` URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def raw_post(base_url: str, path: str, body: dict[str, Any], key: str = "sk-local") -> socket.socket:
    """Send a POST on a socket of its own and return the socket unread: closing it hangs up."""
    host, port = base_url.removeprefix("http://").split("/")[0].split(":")
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head.encode() + payload)
    return sock


def wait_for(condition: Any, timeout: float, what: str) -> float:
    """Poll ``condition()`` until it is true; the seconds it took (fails after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.005)
    return time.monotonic() - started


def twin_model(models_dir: Path, out: Path) -> Path:
    """A copy of tiny-chat's directory whose weights are re-drawn from another seed (other answers)."""
    import torch
    from transformers import AutoModelForCausalLM

    from openft.models.loader import model_directory

    base = find_base_model(TINY_CHAT)
    assert base is not None
    shutil.copytree(model_directory(base, models_dir), out)
    model = AutoModelForCausalLM.from_pretrained(out)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * parameter.std())
    model.save_pretrained(out)
    return out
