"""Python graders sent by one organization to the real server, run as an ordinary service user on
PostgreSQL, cannot reach another organization's data, the server's files, its database or any network,
cannot fork, exhaust memory, write outside their scratch directory or outlive their time limit, and the
server keeps answering throughout.

Each hostile grader returns 0.5 when everything it tried failed (so a reward of 0.5 proves it ran to
its end and got nothing) and raises with what it obtained when anything succeeded.
"""

from __future__ import annotations

import json
import pwd
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from deployment_support import ServiceServer, postgres_database, service_home, start_service, stop_service

pytestmark = [pytest.mark.deployment, pytest.mark.postgres]

MARKER = f"tenant-alpha-secret-{uuid.uuid4().hex}"
"""In organization alpha's training file (its name and its content): no answer to beta may carry it."""
TIMEOUT = 5.0
"""OPENFT_PYTHON_GRADER_TIMEOUT_SECONDS of this server: each grader's wall-clock and CPU limit."""
SLACK = 15.0
"""What a request may take beyond its grader's limit on a busy 2-core machine."""

SNOOP = r"""
import os, stat, sys, time

TARGET = "@REVERSED@"[::-1].encode()
GUESSES = ["@HOME@", os.path.dirname("@HOME@"), os.path.expanduser("~"), "/home", "/var/lib", "/tmp", "/root",
           "/var/lib/postgresql", "/etc", "/run", "/var/tmp", "/dev/shm", "/work"]
SKIP = (sys.base_prefix, "/usr", "/proc/self")
deadline = time.monotonic() + 2.5
found, tried = [], []

def read(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        data = os.read(fd, 1 << 20) if stat.S_ISREG(os.fstat(fd).st_mode) else b""  # no pipe can block it
    except OSError:
        return
    finally:
        os.close(fd)
    tried.append(path)
    if TARGET in data:
        found.append((path, data))

def walk(top, depth):
    if time.monotonic() > deadline or top.startswith(SKIP):
        return
    try:
        names = os.listdir(top)
    except OSError:
        return
    for name in names:
        path = os.path.join(top, name)
        if os.path.isdir(path) and not os.path.islink(path):
            if depth:
                walk(path, depth - 1)
        else:
            read(path)

def grade(sample, item):
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        read(f"/proc/{pid}/environ")
        read(f"/proc/{pid}/cmdline")
        walk(f"/proc/{pid}/cwd", 2)
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []
        for fd in fds:
            read(f"/proc/{pid}/fd/{fd}")
    for top in GUESSES:
        walk(top, 5)
    leaked = [v for v in os.environ.values() if "OPENFT" in v or "postgres" in v]
    if found or leaked:
        raise RuntimeError(f"found {found[0][0] if found else leaked}: {found[0][1][:1500] if found else ''}")
    return 0.5
"""

NETWORK = r"""
import socket

def grade(sample, item):
    reached = []
    for host, port in [("127.0.0.1", @PORT@), ("127.0.0.1", 5432), ("127.0.0.1", 6379), ("1.1.1.1", 443)]:
        try:
            socket.create_connection((host, port), timeout=1).close()
            reached.append((host, port))
        except OSError:
            pass
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))
        reached.append("udp 8.8.8.8:53")
    except OSError:
        pass
    for path in ("/run/postgresql/.s.PGSQL.5432", "/var/run/postgresql/.s.PGSQL.5432"):
        try:
            unix = socket.socket(socket.AF_UNIX)
            unix.connect(path)
            reached.append(path)
        except OSError:
            pass
    if reached:
        raise RuntimeError(f"reached {reached}")
    return 0.5
"""

FORK_BOMB = r"""
import os, subprocess

def grade(sample, item):
    started = 0
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            os._exit(0)  # enough to show it forked; a real bomb would take a broken sandbox's host down
        started += 1
    try:
        subprocess.run(["/bin/true"])
        started += 1
    except OSError:
        pass
    if started:
        raise RuntimeError(f"started {started} processes")
    return 0.5
"""

MEMORY = r"""
def grade(sample, item):
    blocks = []
    try:
        while len(blocks) * 64 < 2048:  # bounded, so a broken sandbox cannot take the host's memory
            blocks.append(bytearray(64 << 20))
    except MemoryError:
        pass
    if len(blocks) * 64 >= 2048:
        raise RuntimeError(f"allocated {len(blocks) * 64} MiB")
    return 0.5
"""

WRITES = r"""
import os

def grade(sample, item):
    wrote = []
    for path in ["/x", "/usr/x", "/etc/x", "/root/x", "/run/x", "/var/tmp/x", "/dev/shm/x", "/home/x",
                 "@HOME@/x", os.path.join(os.path.dirname(os.__file__), "x"), "/proc/self/attr/current"]:
        try:
            with open(path, "w") as f:
                f.write("x")
            wrote.append(path)
        except OSError:
            pass
    with open("scratch.txt", "w") as f:
        f.write("the one writable place")
    try:
        with open("big", "wb") as f:
            f.write(b"x" * (64 << 20))
        wrote.append("64 MiB in scratch")
    except OSError:
        pass
    if wrote:
        raise RuntimeError(f"wrote {wrote}")
    return 0.5
"""

SLEEP = "import time\ndef grade(sample, item):\n    time.sleep(10 ** 6)\n"
SPIN = "def grade(sample, item):\n    while True:\n        pass\n"


@pytest.fixture(scope="module")
def server(service_account: pwd.struct_passwd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with postgres_database() as url:
        home = service_home(service_account, tmp_path_factory)
        server = start_service(service_account, home, url, python_grader_timeout_seconds=str(TIMEOUT))
        try:
            line = json.dumps(
                {"messages": [{"role": "user", "content": MARKER}, {"role": "assistant", "content": "ok"}]}
            )
            server.client("org-alpha").files.create(file=(f"{MARKER}.jsonl", line.encode()), purpose="fine-tune")
            yield server
        finally:
            stop_service(server)


def _grade(server: ServiceServer, source: str) -> tuple[dict, str, float]:
    """Organization beta runs ``source`` as a python grader: the parsed answer, its raw text, its seconds."""
    started = time.monotonic()
    raw = server.client("org-beta").fine_tuning.alpha.graders.with_raw_response.run(
        grader={"type": "python", "name": "probe", "source": source}, model_sample="x", item={"answer": "x"}
    )
    return raw.http_response.json(), raw.http_response.text, time.monotonic() - started


def _still_serving(server: ServiceServer) -> None:
    assert server.healthy()
    names = [f.filename for f in server.client("org-alpha").files.list()]
    assert names == [f"{MARKER}.jsonl"]


def _fill(source: str, server: ServiceServer) -> str:
    return (
        source.replace("@REVERSED@", MARKER[::-1])
        .replace("@HOME@", str(server.home))
        .replace("@PORT@", str(server.port))
    )


def test_the_server_runs_as_an_ordinary_user_and_logs_its_confinement(server: ServiceServer) -> None:
    status = open(f"/proc/{server.process.pid}/status").read()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0
    assert "python graders: confined by bubblewrap" in server.log_text()


def test_an_honest_grader_works_under_every_layer(server: ServiceServer) -> None:
    source = "def grade(sample, item):\n    return float(sample['output_text'] == item['answer']) / 4\n"
    answer, _, _ = _grade(server, source)
    assert answer["reward"] == 0.25
    steps = set(answer["metadata"]["scores"]["sandbox"])
    namespaces = {"user_namespace", "pid_namespace", "network_namespace", "ipc_namespace", "uts_namespace"}
    assert namespaces | {"minimal_root", "rlimits", "landlock", "seccomp"} <= steps


@pytest.mark.parametrize(
    "source",
    [SNOOP, NETWORK, FORK_BOMB, MEMORY, WRITES],
    ids=["snoop-proc-and-dirs", "network", "fork-bomb", "memory", "writes-outside-scratch"],
)
def test_a_hostile_grader_gets_nothing(server: ServiceServer, source: str) -> None:
    answer, text, seconds = _grade(server, _fill(source, server))
    assert MARKER not in text and MARKER[::-1] not in text
    errors = answer["metadata"]["errors"]
    assert answer["reward"] == 0.5, errors["python_grader_runtime_error_details"]
    assert seconds < TIMEOUT + SLACK
    _still_serving(server)


@pytest.mark.parametrize("source", [SLEEP, SPIN], ids=["sleep-forever", "spin-forever"])
def test_a_grader_that_never_returns_is_stopped_at_its_limit(server: ServiceServer, source: str) -> None:
    answer, _, seconds = _grade(server, source)
    assert answer["reward"] == 0.0
    assert answer["metadata"]["errors"]["python_grader_runtime_error"] is True
    assert TIMEOUT * 0.5 < seconds < TIMEOUT + SLACK
    _still_serving(server)


def test_what_the_graders_failed_to_reach_is_reachable_from_the_host(server: ServiceServer) -> None:
    # The network grader's failures mean something: the API and PostgreSQL do listen on loopback.
    for port in (server.port, 5432):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert any(MARKER.encode() in p.read_bytes() for p in server.home.rglob("*") if p.is_file())
