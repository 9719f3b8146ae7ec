"""Executors: how a worker launches, watches and stops a job's training process.

``local`` (the default) runs ``python -m openft.training spec.json`` as a child process on the
worker's machine; ``ray`` runs it inside a Ray actor with the resources the job needs. Both give
the worker the same handle, so the job lifecycle does not know which one runs it.
"""

from __future__ import annotations

from openft.jobs.executors.base import Executor, Handle
from openft.settings import Settings


def make_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor`` names (``local`` or ``ray``)."""
    if settings.executor == "ray":
        from openft.jobs.executors.ray import RayExecutor

        return RayExecutor(settings)
    from openft.jobs.executors.local import LocalExecutor

    return LocalExecutor(standby=settings.standby_training_process)


__all__ = ["Executor", "Handle", "make_executor"]
