"""The child side of the python-grader sandbox; run as ``python -I -S sandbox_child.py``, never imported.

Confined (the default), it starts inside bubblewrap (see ``bubblewrap.py``): its own user, PID,
network, mount, IPC and UTS namespaces and a minimal read-only root with a small tmpfs at ``/tmp``.
It reads one JSON request on stdin, then adds, in order (the reply says which were applied):

1. the unprivileged user: when it is still root (a server run as root), it becomes ``nobody``;
2. rlimits: CPU seconds, address space, file size, open files, no core dumps, at most one process;
3. Landlock (``sandbox_landlock.py``): read only the interpreter and system libraries, write only the
   scratch directory, no TCP, no signals or abstract sockets outside (where the kernel has it);
4. seccomp (``sandbox_seccomp.py``): no sockets, programs, processes or kernel plumbing.

Unconfined (an operator's explicit opt-out), it is started directly and applies the same four steps.
The grader's ``print`` output goes to stderr; the reply is one JSON line on the original stdout.
Common standard-library modules are imported before any step, so a grader that uses them does not
depend on what it may still read afterwards.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import difflib
import encodings.idna
import fractions
import functools
import itertools
import json
import math
import os
import random
import re
import resource
import socket
import statistics
import string
import sys
import traceback
import types
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openft.graders import sandbox_landlock, sandbox_seccomp
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    # From this file's directory: the child has no site-packages.
    import sandbox_landlock
    import sandbox_seccomp

    del sys.path[0]

PRELOADED: tuple[types.ModuleType, ...] = (collections, datetime, decimal, difflib, fractions, functools, itertools)
PRELOADED += (math, random, re, statistics, encodings.idna, socket, string, unicodedata)
DEVICES = (("/dev/null", 0b110), ("/dev/zero", 0b100), ("/dev/urandom", 0b100), ("/dev/random", 0b100))
"""Device files a grader may use (READ_FILE is 0b100, WRITE_FILE 0b010)."""


def confine(request: dict[str, Any], reply: dict[str, Any]) -> None:
    limits = request["limits"]
    applied: list[str] = []
    os.chdir(request["workdir"])
    if os.geteuid() == 0:
        uid, gid = request["drop_to"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        applied.append("unprivileged_user")
    cpu = math.ceil(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["disk_bytes"], limits["disk_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
    applied.append("rlimits")
    if sandbox_landlock.restrict(request["readable"], [request["workdir"]], DEVICES):
        applied.append("landlock")
    if sandbox_seccomp.install():
        applied.append("seccomp")
    os.environ.clear()
    os.environ.update({"HOME": request["workdir"], "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    reply["sandbox"] = applied


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reply: dict[str, Any] = {}
    try:
        confine(request, reply)
    except BaseException as exc:
        reply.update(error="server", details=f"the sandbox could not be set up: {type(exc).__name__}: {exc}")
        out.write(json.dumps(reply) + "\n")
        out.flush()
        return
    for key in ("limits", "readable", "drop_to"):
        request.pop(key, None)
    try:
        namespace: dict[str, Any] = {"__name__": "grader"}
        exec(compile(request["source"], "grader.py", "exec"), namespace)
        grade = namespace.get("grade")
        if not callable(grade):
            raise NameError("the grader's source must define grade(sample, item)")
        value = grade(request["sample"], request["item"])
        reply["reward"] = float(value)
    except BaseException as exc:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        reply.update(error="runtime", details="".join(lines)[-2000:])
    try:
        out.write(json.dumps(reply) + "\n")
        out.flush()
    except BaseException:
        os._exit(3)
    os._exit(0)


if __name__ == "__main__":
    main()
