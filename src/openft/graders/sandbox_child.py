"""The child side of the python-grader sandbox; run as ``python -I -S sandbox_child.py``, never imported.

It starts as the server's user, reads one JSON request on stdin, confines itself, then runs the
grader's source. Confinement, in order (each step that needs root is skipped without it, and the
reply says which were applied):

1. new network and mount namespaces (``unshare``): no interface but a down loopback, no sockets to
   the server, its database or the outside;
2. the server's data directories and the shared temporary directories are covered by empty tmpfs
   mounts; the working directory is a fresh, small tmpfs mounted over ``/tmp``;
3. the process becomes an unprivileged user (``nobody``) with no supplementary groups;
4. rlimits: CPU seconds, address space, file size, open files, no core dumps, and at most one
   process for that user (a fork fails).

The grader's ``print`` output goes to stderr; the reply is one JSON line on the original stdout.
Common standard-library modules are imported before the privilege drop, because the interpreter's
own directory may not be readable by the unprivileged user.
"""

from __future__ import annotations

import collections
import ctypes
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
import unicodedata

PRELOADED = (collections, datetime, decimal, difflib, fractions, functools, itertools, math, random, re, statistics)
PRELOADED += (encodings.idna, socket, string, unicodedata)

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18


def confine(request: dict, reply: dict) -> None:
    limits = request["limits"]
    applied: list[str] = []
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() == 0:
        if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) == 0:
            applied.append("network")
            if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                raise OSError(ctypes.get_errno(), "cannot make mounts private")
            for path in request["hide"]:
                if (
                    os.path.isdir(path)
                    and libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64k,mode=0755") != 0
                ):
                    raise OSError(ctypes.get_errno(), f"cannot hide {path}")
            applied.append("hidden_paths")
            # The working directory: a fresh tmpfs over /tmp, owned by the grader, bounded in size.
            options = f"size={limits['disk_bytes']},mode=0700,uid={request['uid']},gid={request['gid']}"
            if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()) != 0:
                raise OSError(ctypes.get_errno(), "cannot mount the working directory")
            request["workdir"] = "/tmp"
        os.chdir(request["workdir"])
        os.setgroups([])
        os.setgid(request["gid"])
        os.setuid(request["uid"])
        applied.append("unprivileged_user")
    else:
        os.chdir(request["workdir"])
    cpu = math.ceil(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["disk_bytes"], limits["disk_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
    applied.append("rlimits")
    os.environ.clear()
    os.environ.update({"HOME": request["workdir"], "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    reply["sandbox"] = applied


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reply: dict = {}
    try:
        confine(request, reply)
    except BaseException as exc:
        reply.update(error="server", details=f"the sandbox could not be set up: {type(exc).__name__}: {exc}")
        out.write(json.dumps(reply) + "\n")
        out.flush()
        return
    del request["hide"], request["limits"]
    try:
        namespace: dict = {"__name__": "grader"}
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
