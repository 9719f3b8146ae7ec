"""Run a python grader's ``grade(sample, item)`` in a confined child process.

Each call starts ``python -I -S sandbox_child.py`` (isolated mode: no site-packages, no user
environment) inside bubblewrap (``bubblewrap.py``: its own namespaces and a minimal root), sends it
one JSON request and waits at most ``limits.wall_seconds``; the child adds an unprivileged user,
rlimits, Landlock and seccomp (``sandbox_child.py``). Only with ``confined=False`` (an operator's
explicit opt-out, see ``confinement.py``) is the child started directly, with its own steps only.
Whatever happens (a hang, a crash, a kill, garbage on stdout, no bubblewrap) the caller gets a
``SandboxResult``, never an exception and never a wait longer than the wall-clock limit.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openft.graders import bubblewrap

HERE = Path(__file__).parent
CHILD_FILES = (HERE / "sandbox_child.py", HERE / "sandbox_landlock.py", HERE / "sandbox_seccomp.py")
"""The child script, then the modules it loads from its own directory."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 30.0
    """The child is killed after this long; OpenAI allows 2 minutes, training cannot wait that long per sample."""
    cpu_seconds: float = 30.0
    memory_bytes: int = 1024 * 1024 * 1024
    """Address-space limit (RLIMIT_AS) of the child interpreter."""
    disk_bytes: int = 16 * 1024 * 1024
    """Largest file the grader may write, and the size of its working directory."""


@dataclass(frozen=True)
class SandboxResult:
    reward: float | None
    """The grade, or None when the grader failed (the caller turns that into a reward of 0)."""
    error: str | None = None
    """``runtime`` (the grader raised, returned a non-number, exceeded a limit or was killed),
    ``timeout`` or ``server`` (the sandbox itself failed)."""
    details: str | None = None
    sandbox: list[str] = field(default_factory=list)
    """The confinement steps that were applied: ``user_namespace``, ``pid_namespace``,
    ``network_namespace``, ``ipc_namespace``, ``uts_namespace``, ``minimal_root`` (bubblewrap), then
    ``unprivileged_user``, ``rlimits``, ``landlock``, ``seccomp`` (the child)."""
    seconds: float = 0.0


@dataclass
class _Launch:
    argv: list[str]
    workdir: str
    """The child's working directory (its scratch space), as the child sees it."""
    readable: list[str]
    steps: list[str]
    host_workdir: str | None = None
    """A host directory to remove afterwards (unconfined runs only)."""


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _confined_launch(hide: Sequence[str], limits: SandboxLimits) -> _Launch:
    bwrap = bubblewrap.find()
    if bwrap is None:
        raise FileNotFoundError("bubblewrap (bwrap) is not installed")
    argv, steps = bubblewrap.command(bwrap, CHILD_FILES, hide, limits.disk_bytes, as_root=os.geteuid() == 0)
    readable = [*bubblewrap.readable_roots(), bubblewrap.SANDBOX_DIR]
    return _Launch(argv, bubblewrap.SCRATCH, readable, steps)


def _unconfined_launch() -> _Launch:
    workdir = tempfile.mkdtemp(prefix="openft-grader-")
    if os.geteuid() == 0:
        os.chown(workdir, *_nobody())
    readable = [*bubblewrap.readable_roots(), str(HERE)]
    argv = [sys.executable, "-I", "-S", str(CHILD_FILES[0])]
    return _Launch(argv, workdir, readable, [], host_workdir=workdir)


def run_python_grader(
    source: str,
    sample: dict[str, Any],
    item: dict[str, Any],
    *,
    confined: bool = True,
    hide: Sequence[str | os.PathLike[str]] = (),
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """Grade one sample with ``source``'s ``grade(sample, item)`` in a sandbox.

    Args:
        source: Python source defining ``grade``.
        sample: The ``sample`` namespace (see ``template.make_sample``).
        item: The dataset item.
        confined: Run inside bubblewrap; False only when the operator accepted unconfined graders.
        hide: Directories the grader must not see (the server's data directory, the database's).
        limits: Time, memory and disk limits; defaults to ``SandboxLimits()``.
    """
    limits = limits or SandboxLimits()
    started = time.monotonic()
    try:
        hidden = [str(Path(p).resolve()) for p in hide]
        launch = _confined_launch(hidden, limits) if confined else _unconfined_launch()
        request = {
            "source": source,
            "sample": sample,
            "item": item,
            "workdir": launch.workdir,
            "readable": launch.readable,
            "drop_to": list(_nobody()),
            "limits": {k: getattr(limits, k) for k in ("cpu_seconds", "memory_bytes", "disk_bytes")},
        }
        payload = json.dumps(request, default=str).encode()
    except (OSError, ValueError, TypeError) as exc:
        return SandboxResult(None, "server", f"cannot prepare the grader's sandbox: {exc}")
    try:
        return _run(launch, payload, limits, started)
    finally:
        if launch.host_workdir:
            shutil.rmtree(launch.host_workdir, ignore_errors=True)


def _run(launch: _Launch, payload: bytes, limits: SandboxLimits, started: float) -> SandboxResult:
    # Output goes to unlinked temporary files, not pipes: the child's RLIMIT_FSIZE then caps what a
    # grader can make the server hold, however much it prints.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen(
                launch.argv,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd=launch.host_workdir or "/",
                start_new_session=True,
            )
        except OSError as exc:
            return SandboxResult(None, "server", f"cannot start the grader: {exc}")
        try:
            process.communicate(payload, timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            return SandboxResult(
                None,
                "timeout",
                f"The grader ran longer than {limits.wall_seconds:g} s and was stopped.",
                list(launch.steps),
                time.monotonic() - started,
            )
        finally:
            _kill_group(process)
        result = _parse_reply(process.returncode, _tail(out), _tail(err), time.monotonic() - started)
    if result.error == "server" and not result.sandbox:
        return result  # the sandbox was not set up: no step to report, and the grader never ran
    return SandboxResult(result.reward, result.error, result.details, launch.steps + result.sandbox, result.seconds)


def _tail(f: IO[bytes], limit: int = 64 * 1024) -> bytes:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - limit))
    return f.read()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parse_reply(returncode: int, stdout: bytes, stderr: bytes, seconds: float) -> SandboxResult:
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        tail = stderr.decode(errors="replace")[-500:].strip()
        if tail.startswith("bwrap:"):
            # bubblewrap itself failed (no user namespaces, a refused mount): the grader never ran.
            return SandboxResult(None, "server", f"the sandbox could not be set up: {tail}", seconds=seconds)
        if returncode > 128 and returncode - 128 in signal.Signals._value2member_map_:
            returncode = 128 - returncode  # bubblewrap passes a signal's death on as 128 + the signal
        if returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else returncode
            why = f"The grader was killed by {name}"
            if returncode == -signal.SIGXCPU:
                why += " (CPU time limit)"
        else:
            why = f"The grader exited with code {returncode} without a result"
        return SandboxResult(None, "runtime", f"{why}. {tail}".strip(), seconds=seconds)
    applied = [str(s) for s in reply.get("sandbox", [])]
    if reply.get("error"):
        return SandboxResult(None, str(reply["error"]), str(reply.get("details", "")), applied, seconds)
    reward = reply.get("reward")
    if not isinstance(reward, int | float) or not math.isfinite(reward):
        return SandboxResult(None, "runtime", f"grade() returned {reward!r}, not a finite number", applied, seconds)
    return SandboxResult(float(reward), None, None, applied, seconds)
