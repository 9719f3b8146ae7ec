"""API latency: p50/p99 of retrieve, list and list-events under 16 concurrent clients on a big SQLite store.

Run from the repository root::

    .venv/bin/python -m benchmarks.api_latency [--jobs 100000] [--events 2000000] [--clients 16] [--requests 3000] \
        [--rounds 1] [--database PATH] [--note TEXT]

Fills a fresh SQLite store (through the migrations, so with the real indexes) with ``--jobs`` jobs
and ``--events`` events, bulk-inserted with SQLAlchemy Core ``executemany``: one job (the "hot"
one) holds a tenth of the events, the others share the rest evenly.
Then starts ``openft serve --no-worker`` (``--workers N`` with ``--api-processes N``) on loopback and
drives it with ``--clients`` concurrent keep-alive clients (asyncio sockets; ``--client httpx`` for
httpx), one endpoint at a time, ``--requests`` requests each:

* ``retrieve``: ``GET /v1/fine_tuning/jobs/{id}`` of a random job;
* ``list``: ``GET /v1/fine_tuning/jobs?limit=20``, half of them from a random ``after`` cursor;
* ``list_events``: ``GET /v1/fine_tuning/jobs/{id}/events?limit=20`` of a random job (a quarter on
  the hot job), half of them from a random ``after`` cursor;
* baseline: ``GET /health``, the same server and clients without the store.

Prints p50/p99 per endpoint and each p99 over the baseline's p99 (goal: p99 under 20 ms), with
the load average before and after the requests, and appends one JSON line to
``benchmarks/results.jsonl``. ``--database PATH`` keeps the filled store there (filled only when the
file does not exist yet), so several servers can be measured on the same data. ``--rounds N`` sends
each endpoint's requests in N slices, taking the endpoints in turn N times, so that on a shared
machine each endpoint and the baseline meet the same passing load. Each endpoint's line also gives
the CPU time per request of the server process and of the clients' process.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, append_result

ORGANIZATION = "org-personal"  # the local user's organization when no API keys are configured
CHUNK = 20_000


def job_id(i: int) -> str:
    return f"ftjob-bench{i:012d}"


def event_id(job: int, k: int) -> str:
    return f"ftevent-bench{job:09d}x{k:07d}"


def events_per_job(n_jobs: int, n_events: int) -> Callable[[int], int]:
    """Job 0 (the hot job) gets a tenth of the events; the others share the rest evenly."""
    hot = n_events // 10
    rest = n_events - hot
    base, extra = divmod(rest, max(1, n_jobs - 1))
    return lambda j: hot if j == 0 else base + (1 if j <= extra else 0)


def populate(url: str, n_jobs: int, n_events: int) -> float:
    """Create the schema and bulk-insert the jobs and events; returns the seconds it took."""
    from sqlalchemy import insert

    from openft.store import open_store
    from openft.store import schema as s
    from openft.store.rows import JobRow

    started = time.perf_counter()
    store = open_store(url)
    now = int(time.time()) - n_jobs
    statuses = ("succeeded", "failed", "cancelled", "running", "queued")
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}}
    with store.engine.begin() as conn:
        for first in range(0, n_jobs, CHUNK):
            rows = [
                dataclasses.asdict(
                    JobRow(
                        id=job_id(i),
                        organization_id=ORGANIZATION,
                        model="openft/tiny-chat",
                        training_file="file-bench",
                        validation_file=None,
                        status=statuses[i % len(statuses)],
                        method=method,
                        hyperparameters={"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.0},
                        seed=i,
                        model_name=f"ft:openft/tiny-chat:personal::{i:08d}",
                        created_at=now + i,
                        metadata={"run": str(i % 100)},
                    )
                )
                for i in range(first, min(n_jobs, first + CHUNK))
            ]
            conn.execute(insert(s.jobs), rows)
    count = events_per_job(n_jobs, n_events)
    batch: list[dict[str, Any]] = []
    with store.engine.begin() as conn:
        for j in range(n_jobs):
            for k in range(count(j)):
                batch.append(
                    {
                        "id": event_id(j, k),
                        "job_id": job_id(j),
                        "created_at": now + j,
                        "level": "info",
                        "type": "metrics" if k % 2 else "message",
                        "message": f"Step {k}: training loss=1.23",
                        "data": {"step": k, "train_loss": 1.23} if k % 2 else None,
                    }
                )
                if len(batch) >= CHUNK:
                    conn.execute(insert(s.job_events), batch)
                    batch = []
        if batch:
            conn.execute(insert(s.job_events), batch)
    store.engine.dispose()
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, port: int, *, worker: bool = False, database_url: str | None = None, processes: int = 1
) -> subprocess.Popen[bytes]:
    """``openft serve`` on loopback with ``home`` as ``$OPENFT_HOME``, once ``/health`` answers."""
    import httpx

    env = {**os.environ, "OPENFT_HOME": str(home)}
    if database_url is not None:
        env["OPENFT_DATABASE_URL"] = database_url
    openft = Path(sys.executable).parent / "openft"
    process = subprocess.Popen(
        [
            str(openft),
            "serve",
            "--worker" if worker else "--no-worker",
            "--port",
            str(port),
            "--workers",
            str(processes),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not become healthy in 180 s")


class KeepAliveConnection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads ``Content-Length`` bodies.

    The load generator shares the machine's cores with the server it measures, so it has to cost far
    less per request than the server does: httpx costs 0.9-2.1 ms of CPU per request, more than the
    server's 0.6-2 ms, and so sets the latency it is meant to measure. This costs a few tens of
    microseconds. ``--client httpx`` still measures with httpx.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> KeepAliveConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def get(self, path: str) -> tuple[int, bytes]:
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\nAuthorization: Bearer local\r\n\r\n".encode())
        status = int((await self._reader.readline()).split()[1])
        length = None
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"GET {path}: no Content-Length in the response")
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


async def drive(base_url: str, paths: list[str], clients: int, client_kind: str = "raw") -> list[float]:
    """Send every path once, ``clients`` at a time; returns the latencies in milliseconds."""
    queue = list(reversed(paths))
    latencies: list[float] = []

    def check(path: str, status: int, body: bytes) -> None:
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")

    async def raw_client() -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        connection = await KeepAliveConnection.open(host, int(port))
        try:
            while queue:
                path = queue.pop()
                started = time.perf_counter()
                status, body = await connection.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                check(path, status, body)
        finally:
            connection.close()

    async def httpx_client() -> None:
        import httpx

        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer local"}) as http:
            while queue:
                path = queue.pop()
                started = time.perf_counter()
                response = await http.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                check(path, response.status_code, response.content)

    client = raw_client if client_kind == "raw" else httpx_client
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def run_loop(coroutine: Any) -> Any:
    """Run on uvloop where it is installed (uvicorn's own loop, installed with it): cheaper per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its children (``serve --workers N``'s API
    processes), all their threads, from ``/proc``; NaN where there is none."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            found = True
    return total if found else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def request_paths(n_jobs: int, n_events: int, n_requests: int, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    count = events_per_job(n_jobs, n_events)
    jobs = "/v1/fine_tuning/jobs"

    def events_path() -> str:
        j = 0 if rng.random() < 0.25 else rng.randrange(n_jobs)
        path = f"{jobs}/{job_id(j)}/events?limit=20"
        if count(j) and rng.random() < 0.5:
            path += f"&after={event_id(j, rng.randrange(count(j)))}"
        return path

    def list_path() -> str:
        return f"{jobs}?limit=20" + (f"&after={job_id(rng.randrange(n_jobs))}" if rng.random() < 0.5 else "")

    return {
        "baseline_health": ["/health"] * n_requests,
        "retrieve": [f"{jobs}/{job_id(rng.randrange(n_jobs))}" for _ in range(n_requests)],
        "list": [list_path() for _ in range(n_requests)],
        "list_events": [events_path() for _ in range(n_requests)],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3000, help="per endpoint")
    parser.add_argument("--results", type=Path, default=None, help="append here instead of benchmarks/results.jsonl")
    parser.add_argument(
        "--database", type=Path, default=None, help="SQLite file to use, filled only if absent (default: a fresh one)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="split each endpoint's requests over this many rounds of all endpoints, so that every endpoint "
        "meets the same passing load on a shared machine",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="openft serve --workers N (default: one per core, as a deployment on this machine would run)",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: keep-alive sockets costing microseconds per request (default), or httpx",
    )
    parser.add_argument("--note", default=None, help="free text stored in the results line (e.g. the code measured)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="openft-api-bench-") as tmp:
        home = Path(tmp)
        database = args.database or home / "openft.db"
        fill_seconds = None
        if not database.exists():
            fill_seconds = populate(f"sqlite:///{database}", args.jobs, args.events)
        db_mb = database.stat().st_size / 1e6
        port = free_port()
        server = start_server(home, port, database_url=f"sqlite:///{database.resolve()}", processes=args.api_processes)
        load_before = os.getloadavg()
        try:
            base_url = f"http://127.0.0.1:{port}"
            paths = request_paths(args.jobs, args.events, args.requests)
            run_loop(
                drive(base_url, [p for group in paths.values() for p in group[:50]], args.clients, args.client)
            )  # warm-up
            totals = {name: {"latencies": [], "seconds": 0.0, "server_cpu": 0.0, "client_cpu": 0.0} for name in paths}
            for round_ in range(args.rounds):
                for name, group in paths.items():
                    part = group[round_ :: args.rounds]
                    started, client_cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds(server.pid)
                    totals[name]["latencies"] += run_loop(drive(base_url, part, args.clients, args.client))
                    totals[name]["seconds"] += time.perf_counter() - started
                    totals[name]["server_cpu"] += cpu_seconds(server.pid) - server_cpu
                    totals[name]["client_cpu"] += time.process_time() - client_cpu
            results: dict[str, Any] = {}
            for name, t in totals.items():
                n = len(t["latencies"])
                results[name] = {
                    "p50_ms": percentile(t["latencies"], 0.50),
                    "p99_ms": percentile(t["latencies"], 0.99),
                    "requests_per_second": n / t["seconds"],
                    # Where the two cores went: CPU per request in the server and in the clients' process.
                    "server_cpu_ms_per_request": t["server_cpu"] * 1000 / n,
                    "client_cpu_ms_per_request": t["client_cpu"] * 1000 / n,
                }
        finally:
            server.terminate()
            server.wait(timeout=30)
        load_after = os.getloadavg()
    baseline_p99 = results["baseline_health"]["p99_ms"]
    for name in ("retrieve", "list", "list_events"):
        results[name]["p99_over_baseline"] = results[name]["p99_ms"] / baseline_p99
    record = {
        "benchmark": "api_latency",
        "jobs": args.jobs,
        "events": args.events,
        "clients": args.clients,
        "requests_per_endpoint": args.requests,
        "rounds": args.rounds,
        "client": args.client,
        "api_processes": args.api_processes,
        **({"note": args.note} if args.note else {}),
        "fill_seconds": fill_seconds,
        "database_mb": db_mb,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        **results,
    }
    print(f"\napi_latency: {args.jobs:,} jobs, {args.events:,} events in {db_mb:.0f} MB of SQLite")
    print(f"bulk insert: {fill_seconds:.0f} s" if fill_seconds is not None else f"reused {database}")
    print(f"load average (1, 5, 15 min) before: {record['load_average_before']}, after: {record['load_average_after']}")
    print(
        f"{args.clients} concurrent clients, {args.requests} requests per endpoint in {args.rounds} round(s), "
        f"{args.api_processes} API process(es), {args.client} client"
    )
    header = f"{'endpoint':<16} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'p99 / health p99':>17}"
    print(f"{header} {'server CPU ms/req':>18} {'client CPU ms/req':>18}")
    for name in ("baseline_health", "retrieve", "list", "list_events"):
        r = results[name]
        ratio = f"{r['p99_over_baseline']:.2f}x" if "p99_over_baseline" in r else ""
        print(
            f"{name:<16} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['requests_per_second']:>8.0f} {ratio:>17} "
            f"{r['server_cpu_ms_per_request']:>18.2f} {r['client_cpu_ms_per_request']:>18.2f}"
        )
    print("goal: p99 under 20 ms")
    append_result(record, args.results)
    return record


if __name__ == "__main__":
    main()
