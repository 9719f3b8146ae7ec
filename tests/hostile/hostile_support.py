"""A real openft server on a loopback port (uvicorn in a thread) for the hostile corpus, with one API key,
small limits, and a neighbour that keeps calling it while the corpus runs; and the error check.

One server per database (SQLite and PostgreSQL) for the whole module, so a case that hurt the server
would show up in the cases after it and in the neighbour's calls.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from openft.api.app import create_app
from openft.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get("OPENFT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
LIMITS = {
    "max_request_bytes": 64 * 1024,
    "max_file_bytes": 8 * 1024 * 1024,
    "max_upload_part_bytes": 128 * 1024,
    "max_examples_per_file": 1000,
    "requests_per_minute": 0,
}


@dataclass
class Neighbour:
    """Calls ``/health`` and lists files, over and over, on its own connection; records what it got."""

    url: str
    key: str
    statuses: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                for path in ("/health", "/v1/files?limit=1"):
                    try:
                        self.statuses.append(http.get(path, headers=headers).status_code)
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{path}: {exc!r}")
                self.stop.wait(0.05)


@dataclass
class HostileServer:
    url: str
    key: str
    settings: Settings
    neighbour: Neighbour

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {self.key}"}, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_url() -> Iterator[str]:
    if os.environ.get("OPENFT_TEST_POSTGRES") == "skip":
        pytest.skip("PostgreSQL tests disabled by OPENFT_TEST_POSTGRES=skip")
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"openft_hostile_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc.__class__.__name__})")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hostile_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Iterator[HostileServer]:
    home = tmp_path_factory.mktemp("hostile")
    (home / "models").symlink_to(models_dir)
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{home / 'openft.db'}"])
    else:
        urls = _postgres_url()
    database_url = next(urls)
    settings = Settings(home=home, database_url=database_url, **LIMITS)  # type: ignore[arg-type]
    app = create_app(settings, embedded_worker=False)
    key = app.state.keys.create("org-hostile", "proj_hostile")[1]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the hostile-corpus server did not start")
        time.sleep(0.05)
    neighbour = Neighbour(url, key)
    watcher = threading.Thread(target=neighbour.run, daemon=True)
    watcher.start()
    try:
        yield HostileServer(url=url, key=key, settings=settings, neighbour=neighbour)
    finally:
        neighbour.stop.set()
        watcher.join(timeout=30)
        server.should_exit = True
        thread.join(timeout=30)
        next(urls, None)  # drops the PostgreSQL database


def expect_error(response: httpx.Response, status: int, code: str | None, message: str, param: str | None) -> None:
    """``response`` is exactly this error in OpenAI's envelope; ``message`` with a leading ``~`` is a part."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error = body["error"]
    assert error["type"] == "invalid_request_error", error
    assert (error["code"], error["param"]) == (code, param), error
    if message.startswith("~"):
        assert message[1:] in error["message"], error
    else:
        assert error["message"] == message, error
