"""A seccomp filter for the python-grader sandbox: no sockets, no new programs or processes, no kernel plumbing.

Loaded by ``sandbox_child.py`` from its own directory (standard library only, never imported by the
server), after the interpreter has started and just before the grader's code runs. A grader computes
a number; it needs none of the system calls refused here, and each of them is a way out of a
sandbox or into the kernel's larger attack surface (``ctypes`` can make any system call):

- ``socket``: no network of any family (the network namespace is empty too);
- ``execve``/``execveat``, ``fork``/``vfork``, ``clone`` without ``CLONE_THREAD`` or with any
  namespace flag: no other program, no other process (``clone3`` answers ENOSYS so the C library
  falls back to ``clone``);
- namespaces, mounts, ``ptrace`` and cross-process memory, keyrings, BPF, perf, userfaultfd,
  io_uring, kernel modules, kexec, reboot, swap, accounting, quotas, file handles.

Refused calls fail with EPERM; a call from another ABI (32-bit or x32 on x86-64) kills the process.
Only x86-64 and aarch64 are known; elsewhere ``install`` applies nothing and says so.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16
CLONE_THREAD = 0x00010000
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET."""
X32_BIT = 0x40000000

ARCHITECTURES = {"x86_64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1)}
"""Per machine (``platform.machine()``): its audit architecture and its column in ``NUMBERS``."""
NUMBERS: dict[str, tuple[int, int | None]] = {
    "socket": (41, 198),
    "execve": (59, 221),
    "execveat": (322, 281),
    "fork": (57, None),
    "vfork": (58, None),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "mount_setattr": (442, 442),
    "move_mount": (429, 429),
    "open_tree": (428, 428),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "personality": (135, 92),
}
"""The refused system calls: their numbers on x86-64 and on aarch64 (None: the machine has no such call)."""
CLONE, CLONE3 = (56, 220), (435, 435)


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as ``(code, jt, jf, k)`` instructions for ``machine`` (``platform.machine()``).

    Raises:
        KeyError: the machine is not one this filter knows.
    """
    arch, column = ARCHITECTURES[machine]
    eperm = RET_ERRNO | errno.EPERM
    code: list[tuple[int, int, int, int]] = [
        (LD_W_ABS, 0, 0, OFFSET_ARCH),
        (JEQ_K, 1, 0, arch),
        (RET_K, 0, 0, RET_KILL_PROCESS),
        (LD_W_ABS, 0, 0, OFFSET_NR),
        (JGE_K, 0, 1, X32_BIT),
        (RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    for numbers in NUMBERS.values():
        number = numbers[column]
        if number is not None:
            code += [(JEQ_K, 0, 1, number), (RET_K, 0, 0, eperm)]
    code += [(JEQ_K, 0, 1, CLONE3[column]), (RET_K, 0, 0, RET_ERRNO | errno.ENOSYS)]
    # clone: threads only (the accumulator now holds the flags, so both branches return).
    code += [
        (JEQ_K, 0, 5, CLONE[column]),
        (LD_W_ABS, 0, 0, OFFSET_ARG0),
        (JSET_K, 2, 0, CLONE_NAMESPACES),
        (JSET_K, 0, 1, CLONE_THREAD),
        (RET_K, 0, 0, RET_ALLOW),
        (RET_K, 0, 0, eperm),
    ]
    code.append((RET_K, 0, 0, RET_ALLOW))
    return code


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install() -> bool:
    """Apply the filter to this process for good; False (nothing applied) on an unknown machine.

    Raises:
        OSError: the kernel refused the filter.
    """
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        return False
    code = program(machine)
    raw = b"".join(struct.pack("=HBBI", *instruction) for instruction in code)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    fprog = _Program(len(code), raw)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    return True
