"""``openft serve --workers N``: N API processes, each listening on a socket of its own on one port.

One Python process runs Python on one core at a time, so a server on a machine with more cores runs
several API processes. uvicorn's own ``workers=N`` shares one listening socket between them, and the
first event loop to wake accepts every pending connection: keep-alive clients that connect together
all land in one process while the others idle (16 clients listing jobs ran at one process's speed
with two). Here each process binds its own socket with ``SO_REUSEPORT``, and the kernel spreads new
connections over them. This supervising process restarts an API process that crashes, and stops
them all on SIGTERM or SIGINT.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import threading
from multiprocessing.process import BaseProcess
from typing import Any

APP_FACTORY = "openft.api.app:create_app_from_environment"
BACKLOG = 2048  # uvicorn's default
STOP_SECONDS = 30.0


def serve_processes(host: str, port: int, count: int, stop: threading.Event) -> None:
    """Run ``count`` API processes on ``host:port`` until ``stop`` is set (SIGTERM and SIGINT set it).

    The processes build their app with ``create_app_from_environment``: the caller puts their settings
    in the environment first, and checks the port with ``ensure_port_is_free``.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this process leaks in

    def start(index: int) -> BaseProcess:
        process = context.Process(target=_serve_one, args=(host, port), name=f"openft-api-{index}", daemon=True)
        process.start()
        return process

    processes = [start(i) for i in range(count)]
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if process.exitcode == 0:  # a clean exit is a stop request (Ctrl-C reaches every process)
                    stop.set()
                elif process.exitcode is not None:
                    processes[i] = start(i)
    finally:
        for process in processes:
            process.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
        for process in processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()


def ensure_port_is_free(host: str, port: int) -> None:
    """Bind the port once without ``SO_REUSEPORT``: sockets that set it share a port silently, so a
    second ``openft serve --workers N`` on a busy port would otherwise take half of another server's
    connections instead of failing.

    Raises:
        OSError: Something already listens on ``host:port``.
    """
    family, kind, proto, _, address = _address(host, port)
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise OSError(exc.errno, f"{host}:{port} is already in use") from exc


def _address(host: str, port: int) -> tuple[Any, ...]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]


def _serve_one(host: str, port: int) -> None:
    import uvicorn

    family, kind, proto, _, address = _address(host, port)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    config = uvicorn.Config(APP_FACTORY, factory=True, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
