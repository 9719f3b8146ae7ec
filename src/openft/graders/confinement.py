"""Whether python graders can be confined here, and refusing them when they cannot.

``probe()`` finds out once per process, by a real trial: a grader run in the sandbox must see no
file of the server, reach no port of the server and start no process. When that fails (bubblewrap
is missing, user namespaces are disabled, a container's seccomp profile refuses ``unshare``),
python graders are refused with a 400 wherever they enter: ``/v1/fine_tuning/alpha/graders/run``
and ``/validate``, a reinforcement job's grader (also inside a ``multi`` grader), and the training
process that would run them. Only ``allow_unconfined_python_graders`` (an operator's documented
choice, warned about at start) lets them run without the namespaces.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openft.errors import InvalidRequest
from openft.graders import bubblewrap
from openft.graders.sandbox import SandboxLimits, run_python_grader
from openft.graders.spec import sub_graders

OPT_OUT = "OPENFT_ALLOW_UNCONFINED_PYTHON_GRADERS=true"
REQUIRED_STEPS = frozenset({"pid_namespace", "network_namespace", "minimal_root", "rlimits"})
TRIAL = """
import os, socket

def grade(sample, item):
    if os.path.exists(item["secret"]):
        return 2.0
    try:
        socket.create_connection(("127.0.0.1", item["port"]), timeout=2).close()
        return 3.0
    except OSError:
        pass
    try:
        pid = os.fork()
    except OSError:
        return 1.0
    if pid == 0:
        os._exit(0)
    return 4.0
"""
"""A trial grader: 1.0 when it could neither see a file of the server, reach its port nor fork."""
ESCAPES = {2.0: "it saw a file of the server", 3.0: "it reached a port of the server", 4.0: "it started a process"}


@dataclass(frozen=True)
class Confinement:
    available: bool
    mechanism: str
    """``bubblewrap 0.8.0`` (its version), or ``none``."""
    steps: tuple[str, ...] = ()
    """The steps the trial grader ran under (see ``SandboxResult.sandbox``)."""
    reason: str | None = None
    """Why python graders cannot be confined, when they cannot."""


_lock = threading.Lock()
_probed: Confinement | None = None


def probe() -> Confinement:
    """Whether python graders can be confined on this machine: a trial run the first time, then cached."""
    global _probed
    with _lock:
        if _probed is None:
            _probed = _trial()
        return _probed


def _trial() -> Confinement:
    bwrap = bubblewrap.find()
    if bwrap is None:
        return Confinement(False, "none", reason="bubblewrap (the bwrap command) is not installed")
    mechanism, _ = bubblewrap.version(bwrap)
    with tempfile.TemporaryDirectory(prefix="openft-probe-") as directory, socket.socket() as listener:
        secret = Path(directory) / "secret"
        secret.write_text("the server's own file")
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        item = {"secret": str(secret), "port": listener.getsockname()[1]}
        outcome = run_python_grader(TRIAL, {}, item, hide=[directory], limits=SandboxLimits(wall_seconds=60))
    steps = tuple(outcome.sandbox)
    if outcome.reward in ESCAPES:
        return Confinement(False, mechanism, steps, f"a trial grader was not confined: {ESCAPES[outcome.reward]}")
    if outcome.reward != 1.0:
        why = (outcome.details or outcome.error or "no result").strip().rstrip(".")
        return Confinement(False, mechanism, steps, f"a trial grader failed in {mechanism}: {why[-600:]}")
    if not REQUIRED_STEPS <= set(steps):
        missing = ", ".join(sorted(REQUIRED_STEPS - set(steps)))
        return Confinement(False, mechanism, steps, f"a trial grader ran without {missing}")
    return Confinement(True, mechanism, steps)


def python_grader_param(grader: dict[str, Any], param: str) -> str | None:
    """Where the first python grader is in a parsed ``grader`` (``param``, or ``param.graders.NAME``)."""
    if grader.get("type") == "python":
        return param
    if grader.get("type") == "multi":
        for name, sub in sub_graders(grader).items():
            found = python_grader_param(sub, f"{param}.graders.{name}")
            if found:
                return found
    return None


def check_python_graders(grader: dict[str, Any], *, param: str, allow_unconfined: bool) -> None:
    """Refuse a parsed ``grader`` that is, or contains, a python grader this server cannot confine.

    Raises:
        InvalidRequest: code ``python_grader_unavailable``, ``param`` naming the python grader.
    """
    where = python_grader_param(grader, param)
    if where is None or allow_unconfined:
        return
    confinement = probe()
    if confinement.available:
        return
    raise InvalidRequest(
        f"Python graders are disabled on this server because they cannot be confined here: {confinement.reason}. "
        f"Use another grader type, or ask the operator to install bubblewrap and enable user namespaces "
        f"(or to accept unconfined python graders with {OPT_OUT}).",
        param=where,
        code="python_grader_unavailable",
    )


def log_confinement(log: logging.Logger, *, allow_unconfined: bool) -> Confinement:
    """Log, at start, how python graders will run here; the probe's result."""
    confinement = probe()
    if confinement.available:
        log.info("python graders: confined by %s (%s)", confinement.mechanism, ", ".join(confinement.steps))
    elif allow_unconfined:
        log.warning(
            "python graders: running UNCONFINED (%s): %s. A grader can read what this server's user can "
            "read and reach the network; only rlimits, and Landlock and seccomp where the kernel has them, apply.",
            OPT_OUT,
            confinement.reason,
        )
    else:
        log.warning(
            "python graders: refused (400 python_grader_unavailable), they cannot be confined here: %s. "
            "Install bubblewrap and enable unprivileged user namespaces, or set %s to accept the risk.",
            confinement.reason,
            OPT_OUT,
        )
    return confinement
