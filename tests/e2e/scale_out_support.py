"""Processes of a scaled-out openft on one shared database: ``openft worker``s, and an ``openft serve
--no-worker`` API in front of them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from e2e_support import LiveServer, _free_port

from openft.settings import Settings


def start_worker(settings: Settings, index: int, *, heartbeat_timeout: float) -> subprocess.Popen[bytes]:
    """``openft worker`` on ``settings``' home and database; its output goes to ``home/worker-{index}.log``."""
    env = {
        **os.environ,
        "OPENFT_HOME": str(settings.home),
        "OPENFT_DATABASE_URL": settings.sqlalchemy_url,
        "OPENFT_TRAINING_THREADS": "1",
        "OPENFT_WORKER_POLL_SECONDS": "0.2",
        "OPENFT_HEARTBEAT_TIMEOUT_SECONDS": str(heartbeat_timeout),
        "OPENFT_EXECUTOR": "local",
    }
    log = (settings.home / f"worker-{index}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "openft", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)


@contextmanager
def running_workers(
    settings: Settings, count: int, *, heartbeat_timeout: float
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` workers, stopped (SIGTERM, then SIGKILL after a minute) on exit."""
    procs = [start_worker(settings, i, heartbeat_timeout=heartbeat_timeout) for i in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def worker_log(settings: Settings, index: int) -> str:
    return (settings.home / f"worker-{index}.log").read_text(errors="replace")


def start_api(settings: Settings) -> LiveServer:
    """``openft serve --no-worker`` on ``settings``' home and database, once ``/health`` answers."""
    port = _free_port()
    env = {**os.environ, "OPENFT_HOME": str(settings.home), "OPENFT_DATABASE_URL": settings.sqlalchemy_url}
    with (settings.home / "server.log").open("wb") as log:
        command = [sys.executable, "-m", "openft", "serve", "--no-worker", "--port", str(port)]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180  # a busy machine can take minutes to import the server
    while not _healthy(url):
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError(f"openft serve did not start:\n{(settings.home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return LiveServer(base_url=f"{url}/v1", home=settings.home, process=process)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
