"""A live ``openft serve`` on a loopback port, with its own home and SQLite database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI


@dataclass
class LiveServer:
    base_url: str
    home: Path
    process: subprocess.Popen[bytes]

    def client(self) -> OpenAI:
        return OpenAI(base_url=self.base_url, api_key="sk-local", max_retries=0, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_live_server(
    home: Path, *serve_args: str, launcher: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> LiveServer:
    """``openft serve --port P *serve_args`` with ``home`` as ``$OPENFT_HOME``, once ``/health`` answers;
    its output goes to ``home/server.log``. ``launcher`` is a command the server is run by (it ends by
    executing its arguments); ``env`` adds to the environment."""
    port = _free_port()
    environment = {**os.environ, "OPENFT_HOME": str(home), "OPENFT_WORKER_POLL_SECONDS": "0.05"}
    environment.pop("OPENFT_DATABASE_URL", None)  # the home's SQLite, unless ``env`` names a database
    environment.update(env or {})
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*launcher, sys.executable, "-m", "openft", "serve", "--port", str(port), *serve_args],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180  # a busy machine can take minutes to import the server
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError(f"openft serve did not start:\n{(home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return LiveServer(base_url=f"{url}/v1", home=home, process=process)


def stop_live_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(models_dir)
    server = start_live_server(home)
    yield server
    stop_live_server(server)
