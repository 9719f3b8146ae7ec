"""Run a python grader's ``grade(sample, item)`` in a confined child process.

Each call starts ``python -I -S sandbox_child.py`` (isolated mode: no site-packages, no user
environment), sends it one JSON request and waits at most ``limits.wall_seconds``. What the child
does to confine itself is described in ``sandbox_child.py``; as root that is new network and mount
namespaces, hidden server directories, the ``nobody`` user and rlimits; otherwise rlimits and a
clean environment only. Whatever happens (a hang, a crash, a kill, garbage on stdout) the caller
gets a ``SandboxResult``, never an exception and never a wait longer than the wall-clock limit.
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

CHILD = Path(__file__).with_name("sandbox_child.py")
SHARED_TEMP_DIRS = ("/var/tmp", "/dev/shm")
SYSTEM_DIRS = ("/etc",)
"""Hidden too: a grader needs no system configuration, and /etc/passwd and friends are nobody's business."""


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
    """The confinement steps that were applied (``network``, ``hidden_paths``, ``unprivileged_user``, ``rlimits``)."""
    seconds: float = 0.0


def _unprivileged_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def run_python_grader(
    source: str,
    sample: dict[str, Any],
    item: dict[str, Any],
    *,
    hide: Sequence[str | os.PathLike[str]] = (),
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """Grade one sample with ``source``'s ``grade(sample, item)`` in a sandbox.

    Args:
        source: Python source defining ``grade``.
        sample: The ``sample`` namespace (see ``template.make_sample``).
        item: The dataset item.
        hide: Directories the grader must not see (the server's data directory, the database's).
        limits: Time, memory and disk limits; defaults to ``SandboxLimits()``.
    """
    limits = limits or SandboxLimits()
    started = time.monotonic()
    uid, gid = _unprivileged_ids()
    workdir = tempfile.mkdtemp(prefix="openft-grader-")
    # /tmp itself becomes the grader's own tmpfs (see sandbox_child.py); these are covered read-only.
    hidden = [str(Path(p).resolve()) for p in hide if Path(p).is_dir()] + [*SHARED_TEMP_DIRS, *SYSTEM_DIRS]
    request = {
        "source": source,
        "sample": sample,
        "item": item,
        "hide": hidden,
        "workdir": workdir,
        "uid": uid,
        "gid": gid,
        "limits": {
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
            "disk_bytes": limits.disk_bytes,
        },
    }
    try:
        if os.geteuid() == 0:
            os.chown(workdir, uid, gid)
        payload = json.dumps(request, default=str).encode()
    except (OSError, ValueError, TypeError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        return SandboxResult(None, "server", f"cannot prepare the grader: {exc}")
    # Output goes to unlinked temporary files, not pipes: the child's RLIMIT_FSIZE then caps what a
    # grader can make the server hold, however much it prints.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(CHILD)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd=workdir,
                start_new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            return SandboxResult(None, "server", f"cannot start the grader: {exc}")
        try:
            process.communicate(payload, timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
            shutil.rmtree(workdir, ignore_errors=True)
            return SandboxResult(
                None,
                "timeout",
                f"The grader ran longer than {limits.wall_seconds:g} s and was stopped.",
                seconds=time.monotonic() - started,
            )
        finally:
            _kill_group(process)
        shutil.rmtree(workdir, ignore_errors=True)
        return _parse_reply(process.returncode, _tail(out), _tail(err), time.monotonic() - started)


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
