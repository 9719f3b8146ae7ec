"""Finding a job's training process on this machine, however it was started.

A training process started for a job names its spec (``.../jobs/{job_id}/spec.json``) on its
command line; a standby process (``python -m openft.training --standby``) is told its spec later,
and then works in the job's directory. Either way the job id is in its command line or its cwd.
"""

from __future__ import annotations

import os
from pathlib import Path


def training_pids(job_id: str) -> list[int]:
    """Pids of the live training processes of ``job_id``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"openft.training" in cmdline and (job_id.encode() in cmdline or Path(cwd).name == job_id):
            pids.append(int(proc.name))
    return pids
