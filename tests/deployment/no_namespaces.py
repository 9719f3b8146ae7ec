"""Run a command where no namespace can be created, as Docker's default seccomp profile does.

    python no_namespaces.py COMMAND [ARGS...]

Installs a seccomp filter (inherited by everything COMMAND starts) under which ``unshare`` and
``setns`` fail with EPERM, ``clone`` with any namespace flag fails with EPERM and ``clone3`` answers
ENOSYS (so the C library uses ``clone``), checks that creating a user namespace really fails, then
execs COMMAND. Standard library only: it runs as whatever user starts it, before openft is loaded.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

MACHINES = {"x86_64": (0xC000003E, 272, 308, 56, 435), "aarch64": (0xC00000B7, 97, 268, 220, 435)}
"""Audit architecture and the numbers of unshare, setns, clone and clone3."""
NAMESPACE_FLAGS = 0x7E020000
"""CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET."""
CLONE_NEWUSER = 0x10000000
LOAD, EQUAL, ANY_BIT, RETURN = 0x20, 0x15, 0x45, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000


def _filter(machine: str) -> bytes:
    arch, unshare, setns, clone, clone3 = MACHINES[machine]
    code = [
        (LOAD, 0, 0, 4),
        (EQUAL, 1, 0, arch),
        (RETURN, 0, 0, ALLOW),
        (LOAD, 0, 0, 0),
        (EQUAL, 0, 1, unshare),
        (RETURN, 0, 0, ERRNO | errno.EPERM),
        (EQUAL, 0, 1, setns),
        (RETURN, 0, 0, ERRNO | errno.EPERM),
        (EQUAL, 0, 1, clone3),
        (RETURN, 0, 0, ERRNO | errno.ENOSYS),
        (EQUAL, 0, 3, clone),
        (LOAD, 0, 0, 16),
        (ANY_BIT, 0, 1, NAMESPACE_FLAGS),
        (RETURN, 0, 0, ERRNO | errno.EPERM),
        (RETURN, 0, 0, ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *op) for op in code)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    libc = ctypes.CDLL(None, use_errno=True)
    program = _filter(platform.machine())
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: what an unprivileged filter needs
        sys.exit(f"no_namespaces: PR_SET_NO_NEW_PRIVS failed: {os.strerror(ctypes.get_errno())}")
    fprog = _Fprog(len(program) // 8, program)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        sys.exit(f"no_namespaces: the seccomp filter was refused: {os.strerror(ctypes.get_errno())}")
    if libc.unshare(CLONE_NEWUSER) == 0 or ctypes.get_errno() != errno.EPERM:
        sys.exit("no_namespaces: a user namespace could still be created")
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
