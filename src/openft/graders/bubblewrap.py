"""The bubblewrap (``bwrap``) command line that starts a python grader in its own namespaces.

bubblewrap is Flatpak's sandbox, packaged by every distribution; as an ordinary user it works through
unprivileged user namespaces, as root through root's own privileges. The grader gets:

- new PID, network, IPC and UTS namespaces (and a user namespace unless the server is root): it sees
  only its own processes in a fresh ``/proc``, and has no network but an empty loopback;
- a minimal root filesystem, read-only: ``/usr`` (and the ``/lib``-style links into it), the
  interpreter's installation and the sandbox's own three files, ``/proc``, a minimal ``/dev`` and a
  small tmpfs at ``/tmp`` (its only writable place). The server's data, the database, home
  directories, ``/etc`` and everything else are simply not there;
- no capabilities, no further user namespaces (``--disable-userns``, bubblewrap 0.8 and later), a
  new session (no terminal to inject input into), and death with its parent.

Run as root, the sandbox keeps only CAP_SETUID and CAP_SETGID, which the child uses at once to
become ``nobody`` (see ``sandbox_child.py``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SANDBOX_DIR = "/run/openft-grader"
"""Where the child's files are mounted inside the sandbox."""
SCRATCH = "/tmp"
SYSTEM = "/usr"
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
NAMESPACE_STEPS = ("pid_namespace", "network_namespace", "ipc_namespace", "uts_namespace", "minimal_root")


def find() -> str | None:
    """The ``bwrap`` executable, or None when bubblewrap is not installed."""
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)


@functools.cache
def version(bwrap: str) -> tuple[str, bool]:
    """bubblewrap's version and whether it has ``--disable-userns`` (0.8 and later)."""
    try:
        shown = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "bubblewrap", False
    return shown or "bubblewrap", "--disable-userns" in usage


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def interpreter_roots() -> list[str]:
    """The directories the interpreter needs: its base installation, and a virtual environment's own
    directory when its executable is a copy rather than a link."""
    executable = os.path.realpath(sys.executable)
    roots = [os.path.realpath(sys.base_prefix)]
    if not _inside(executable, roots[0]):
        roots.append(str(Path(executable).parent.parent))
    return roots


def readable_roots() -> list[str]:
    """Everything a grader may read, as host paths: the interpreter, ``/usr`` and any real ``/lib``-style
    directories (on systems where they are not links into ``/usr``)."""
    tops = [f"/{name}" for name in TOP_LEVEL_LINKS if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}")]
    roots = [SYSTEM, *tops]
    return roots + [r for r in interpreter_roots() if not any(_inside(r, top) for top in roots)]


def command(
    bwrap: str, child_files: Sequence[Path], hide: Sequence[str], scratch_bytes: int, *, as_root: bool
) -> tuple[list[str], list[str]]:
    """The ``bwrap`` argument list that runs ``child_files[0]`` under ``-I -S``, and the steps it applies.

    Args:
        bwrap: The bubblewrap executable.
        child_files: The child script first, then the modules it loads from its directory.
        hide: Directories the grader must not see; covered with an empty tmpfs when they lie inside a
            directory the sandbox mounts (everything else is absent anyway).
        scratch_bytes: Size of the tmpfs at ``/tmp``.
        as_root: The server is root: no user namespace; the child drops to ``nobody`` itself.
    """
    _, disable_userns = version(bwrap)
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc"]
    argv += ["--unshare-uts", "--unshare-cgroup-try", "--hostname", "grader"]
    steps = list(NAMESPACE_STEPS)
    if as_root:
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
        argv += ["--disable-userns"] if disable_userns else []
        steps.insert(0, "user_namespace")
    roots = readable_roots()
    argv += _binds(roots)
    argv += ["--perms", "0755", "--dir", "/run", "--perms", "0755", "--dir", SANDBOX_DIR]
    for file in child_files:
        argv += ["--ro-bind", str(file), f"{SANDBOX_DIR}/{file.name}"]
    for path in hide:
        if any(_inside(path, root) for root in roots):
            argv += ["--tmpfs", path]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(scratch_bytes), "--tmpfs", SCRATCH]
    argv += ["--remount-ro", "/", "--chdir", SCRATCH, "--clearenv"]
    argv += ["--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", SCRATCH]
    python = os.path.realpath(sys.executable)
    return [*argv, "--", python, "-I", "-S", f"{SANDBOX_DIR}/{child_files[0].name}"], steps


def _binds(roots: Sequence[str]) -> list[str]:
    argv: list[str] = []
    for name in TOP_LEVEL_LINKS:
        top = Path("/") / name
        if top.is_symlink():
            argv += ["--symlink", os.readlink(top), str(top)]
    for root in roots:
        # bubblewrap creates missing parents as 0700; the grader (nobody, when the server is root) must
        # be able to pass through them to reach the interpreter.
        for parent in reversed(Path(root).parents[:-1]):
            argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", root, root]
    return argv
