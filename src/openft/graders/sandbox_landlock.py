"""Landlock for the python-grader sandbox: the grader may read only what it was given, write only its scratch.

Loaded by ``sandbox_child.py`` from its own directory (standard library only, never imported by the
server). Landlock is a Linux security module an unprivileged process applies to itself; every access
the kernel's ABI can restrict is handled, so anything not listed is denied: files and directories
outside the allowed ones, TCP bind and connect (ABI 4), abstract unix sockets and signals to
processes outside the sandbox (ABI 6). Where the kernel has no Landlock, nothing is applied and
``restrict`` says so; the other layers of the sandbox still hold.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446
"""The same numbers on every architecture (syscalls added after the tables were unified)."""
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 7, 1 << 8
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights a rule on a file (not a directory) may carry."""
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

READ = READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | REFER | TRUNCATE


class _Ruleset(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def handled_fs(abi: int) -> int:
    """Every filesystem right the kernel's Landlock ABI knows (all of them are denied unless granted)."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def abi_version(libc: ctypes.CDLL) -> int:
    """The kernel's Landlock ABI, 0 when it has none (or it is disabled)."""
    version = libc.syscall(CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(0, int(version))


def restrict(readable: Sequence[str], writable: Sequence[str], devices: Sequence[tuple[str, int]] = ()) -> int:
    """Restrict this process (and what it starts) to ``readable`` and ``writable``; the ABI applied, 0 for none.

    Args:
        readable: Directories or files to read (missing ones are skipped).
        writable: Directories to read, write, create and delete in.
        devices: Device files and the rights on them (``READ_FILE``/``WRITE_FILE``).

    Raises:
        OSError: the kernel has Landlock but refused the ruleset.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = abi_version(libc)
    if abi == 0:
        return 0
    fs = handled_fs(abi)
    attr = _Ruleset(fs, NET_BIND_TCP | NET_CONNECT_TCP, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        rules = [(p, READ) for p in readable] + [(p, WRITE) for p in writable] + list(devices)
        for path, rights in rules:
            _allow(libc, ruleset, path, rights & fs)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        return  # nothing to allow: the grader could not reach it anyway
    try:
        if not os.path.isdir(path):
            rights &= FILE_ONLY
        rule = _PathBeneath(rights, fd)
        if libc.syscall(ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule({path})")
    finally:
        os.close(fd)
