"""Each layer of the python-grader sandbox on its own: bubblewrap's namespaces and minimal root without the
child's steps, Landlock without the namespaces, seccomp without either; then the opt-out path."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openft.graders import bubblewrap, sandbox_landlock, sandbox_seccomp
from openft.graders.confinement import python_grader_param
from openft.graders.sandbox import CHILD_FILES, SandboxLimits, run_python_grader

GRADERS_DIR = str(Path(sandbox_landlock.__file__).parent)
PYTHON = os.path.realpath(sys.executable)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on the host's loopback that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


ATTEMPT = """
import errno

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def write(path):
    with open(path, "w") as f:
        f.write("x")
"""
"""Helpers of the probing scripts below: an action's errno name (``ok`` when it worked), and a write."""


def _python(code: str, argv_prefix: list[str] | None = None) -> dict:
    """Run ``code`` (which prints one JSON object) under ``python -I -S``, after ``argv_prefix`` if any."""
    argv = [*(argv_prefix or []), PYTHON, "-I", "-S", "-c", ATTEMPT + code]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE_ENVIRONMENT = """
import errno, json, os, socket, sys
def connect():
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
print(json.dumps({
    "root": sorted(os.listdir("/")),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "secret": os.path.exists(sys.argv[2]),
    "connect": attempt(connect),
    "scratch": attempt(lambda: write("/tmp/x")),
    "outside": attempt(lambda: write("/usr/x")),
    "uid": os.getuid(),
    "hostname": socket.gethostname(),
}))
"""


def test_bubblewrap_alone_gives_a_minimal_root_its_own_processes_and_no_network(tmp_path: Path, listener: int) -> None:
    bwrap = bubblewrap.find()
    assert bwrap, "bubblewrap is not installed (scripts/setup installs it)"
    secret = tmp_path / "server-data" / "openft.db"
    secret.parent.mkdir()
    secret.write_text("keys")
    argv, steps = bubblewrap.command(bwrap, CHILD_FILES, [str(secret.parent)], 1 << 20, as_root=os.geteuid() == 0)
    prefix = argv[: argv.index("--") + 1]
    code = PROBE_ENVIRONMENT.replace("sys.argv[1]", str(listener)).replace("sys.argv[2]", repr(str(secret)))
    seen = _python(code, prefix)
    # Only what the sandbox mounts: no /etc, /home, /var, /work, no server data.
    assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "run", "proc", "dev"} | {
        "tmp",
        *{Path(r).parts[1] for r in bubblewrap.interpreter_roots()},
    }
    assert "etc" not in seen["root"] and not seen["secret"]
    assert seen["pids"] == [1, 2]  # bubblewrap's init and the interpreter: no process of the host
    assert seen["connect"] in ("ECONNREFUSED", "ENETUNREACH")  # the host's listener is not reachable
    assert seen["scratch"] == "ok" and seen["outside"] == "EROFS"
    assert seen["hostname"] == "grader"
    assert {"pid_namespace", "network_namespace", "minimal_root"} <= set(steps)


LANDLOCKED = """
import errno, json, os, socket, sys
sys.path.insert(0, {graders!r})
import sandbox_landlock
abi = sandbox_landlock.restrict({readable!r}, [{scratch!r}])
print(json.dumps({{
    "abi": abi,
    "secret": attempt(lambda: open({secret!r}).read()),
    "proc": attempt(lambda: os.listdir("/proc")),
    "scratch": attempt(lambda: write(os.path.join({scratch!r}, "x"))),
    "connect": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2).close()),
}}))
"""


def test_landlock_alone_allows_only_the_listed_paths_and_no_tcp(tmp_path: Path, listener: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = sandbox_landlock.abi_version(libc)
    if abi == 0:
        pytest.skip("this kernel has no Landlock")
    secret, scratch = tmp_path / "secret", tmp_path / "scratch"
    secret.write_text("keys")
    scratch.mkdir()
    readable = [*bubblewrap.readable_roots(), GRADERS_DIR]
    code = LANDLOCKED.format(
        graders=GRADERS_DIR, readable=readable, scratch=str(scratch), secret=str(secret), port=listener
    )
    seen = _python(code)
    assert seen["abi"] == abi
    assert seen["secret"] == "EACCES" and seen["proc"] == "EACCES"
    assert seen["scratch"] == "ok"
    if abi >= 4:
        assert seen["connect"] == "EACCES"


SECCOMPED = """
import ctypes, errno, json, os, socket, sys, threading
sys.path.insert(0, {graders!r})
import sandbox_seccomp
installed = sandbox_seccomp.install()
libc = ctypes.CDLL(None, use_errno=True)
def unshare():
    if libc.unshare(0x10000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
results = []
thread = threading.Thread(target=lambda: results.append(sum(range(10))))
thread.start()
thread.join()
print(json.dumps({{
    "installed": installed,
    "socket": attempt(lambda: socket.socket()),
    "fork": attempt(os.fork),
    "exec": attempt(lambda: os.execv("/bin/true", ["true"])),
    "unshare": attempt(unshare),
    "thread": results,
}}))
"""


def test_seccomp_alone_refuses_sockets_processes_programs_and_namespaces_but_not_threads() -> None:
    if platform.machine() not in sandbox_seccomp.ARCHITECTURES:
        pytest.skip(f"the seccomp filter does not know {platform.machine()}")
    seen = _python(SECCOMPED.format(graders=GRADERS_DIR))
    assert seen["installed"] is True
    assert seen["socket"] == seen["fork"] == seen["exec"] == seen["unshare"] == "EPERM"
    assert seen["thread"] == [45]


def test_unconfined_runs_keep_the_childs_own_steps(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keys")
    secret.chmod(0o644)
    source = f"def grade(sample, item):\n    return len(open({str(secret)!r}).read())\n"
    outcome = run_python_grader(source, {}, {}, confined=False, limits=SandboxLimits(wall_seconds=30))
    assert outcome.reward is None and outcome.error == "runtime"
    assert "rlimits" in outcome.sandbox and "minimal_root" not in outcome.sandbox
    assert "PermissionError" in (outcome.details or "")  # Landlock (or nobody, as root) stops the read


def test_the_python_grader_inside_a_multi_grader_is_named() -> None:
    inner = {"type": "python", "name": "py", "source": "def grade(s, i):\n    return 1\n"}
    check = {"type": "string_check", "name": "eq", "input": "a", "reference": "a", "operation": "eq"}
    multi = {"type": "multi", "name": "m", "graders": {"eq": check, "py": inner}, "calculate_output": "eq"}
    assert python_grader_param(inner, "grader") == "grader"
    assert python_grader_param(multi, "method.reinforcement.grader") == "method.reinforcement.grader.graders.py"
    assert python_grader_param(check, "grader") is None
