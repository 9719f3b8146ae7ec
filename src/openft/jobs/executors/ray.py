"""The Ray executor: each job's training process runs inside a Ray actor, on any node of a cluster.

``OPENFT_EXECUTOR=ray``. The worker connects to the cluster named by ``RAY_ADDRESS``, or starts a
local Ray (``OPENFT_RAY_NUM_CPUS`` CPUs). Per job it creates one :class:`TrainingRunner` actor with
the job's resources (see :func:`job_resources`); the actor runs the same
``python -m openft.training spec.json`` the local executor runs (or, when ``OPENFT_RAY_TRAIN_WORKERS``
is above 1, ``python -m openft.training.distributed``, a Ray Train ``TorchTrainer`` driver).

Everything between worker and actor goes through actor methods, so the actor may run on another
machine: the worker sends the spec and the training files with :meth:`TrainingRunner.start`, reads
event lines from an offset with :meth:`TrainingRunner.read_events`, and fetches checkpoint and
adapter directories (as tar archives) when their event lines arrive. When the actor turns out to
run on the worker's own node, it works in the worker's output directory directly and nothing is
copied. Cancel and pause reach the training process as SIGTERM, then SIGKILL, to its process
group through :meth:`TrainingRunner.signal`; :meth:`RayHandle.kill` also kills the actor.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import ray

from openft.jobs.executors.local import die_with_parent, read_log_tail, training_env
from openft.models.catalog import find_base_model
from openft.settings import Settings
from openft.store.rows import JobRow
from openft.training.protocol import EVENTS_FILE, LOG_FILE, STATE_DIR, EventReader

log = logging.getLogger(__name__)

GIB = 1024**3
BASE_MEMORY_BYTES = 1 * GIB
"""Python, torch and the tokenizer, before any weights."""
WEIGHT_MEMORY_FACTOR = 4
"""Bytes of RAM per byte of weight files: the loaded (possibly dequantised to fp32) weights, a
transient copy while loading, activations and LoRA optimizer state (small)."""
KILLED = -int(signal.SIGKILL)
"""The exit code reported when the actor itself is gone (killed, or its node lost)."""


def weights_bytes(model_id: str, registered: dict[str, str] | None = None) -> int:
    """Size of a base model's weight files on this machine; 0 when unknown (a built model)."""
    base = find_base_model(model_id, registered)
    path = Path(base.path) if base is not None and base.path else Path(model_id)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.suffix in (".safetensors", ".bin", ".gguf"))
    return 0


def job_resources(settings: Settings, base_model: str) -> dict[str, Any]:
    """Ray resources of one training process: ``memory = 1 GiB + 4 x weight-file bytes``.

    CPUs: ``OPENFT_TRAINING_THREADS`` (1 when unset, so jobs pack onto a cluster's cores);
    GPUs: ``OPENFT_RAY_GPUS_PER_WORKER``.
    """
    return {
        "num_cpus": settings.training_threads or 1,
        "num_gpus": settings.ray_gpus_per_worker,
        "memory": BASE_MEMORY_BYTES + WEIGHT_MEMORY_FACTOR * weights_bytes(base_model),
    }


def _tar_directory(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(path, arcname=".")
    return buffer.getvalue()


def _untar_into(data: bytes, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(target, filter="data")


class TrainingRunner:
    """Runs one training process on the node Ray placed it on (a Ray actor; see :class:`RayExecutor`)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.work_dir: Path | None = None

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def start(
        self,
        spec: dict[str, Any],
        work_dir: str | None,
        inputs: dict[str, bytes],
        command: list[str],
        state: tuple[str, bytes] | None = None,
    ) -> None:
        """Start ``python <command> spec.json``.

        ``work_dir`` is the worker's output directory when it is visible here (same node); with
        ``None`` the actor makes its own and writes ``inputs`` (file name -> bytes) into it, and the
        spec's paths are pointed at them; ``state`` (path under the output directory, ``.tar.gz``)
        is the full state the run resumes from.
        """
        if work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix=f"openft-{spec['job_id']}-"))
            for name, data in inputs.items():
                (self.work_dir / name).write_bytes(data)
            spec = {**spec, "output_dir": str(self.work_dir)}
            for key in ("training_file", "validation_file"):
                if spec.get(key):
                    spec[key] = str(self.work_dir / Path(spec[key]).name)
            if state is not None:
                _untar_into(state[1], self.work_dir / state[0])
                spec["resume_from"] = str(self.work_dir / state[0])
            if not Path(spec["models_dir"]).is_dir():
                spec["models_dir"] = str(Path(tempfile.gettempdir()) / "openft-models")
        else:
            self.work_dir = Path(work_dir)
        spec_path = self.work_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = training_env()
        # A Ray Train driver started below joins this same cluster.
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        with (self.work_dir / LOG_FILE).open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, *command, str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                env=env,
                cwd=str(self.work_dir),
            )

    def poll(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def wait(self, timeout: float) -> int | None:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def read_events(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Complete event lines after byte ``offset`` of the events file, and the next offset."""
        assert self.work_dir is not None
        reader = EventReader(self.work_dir / EVENTS_FILE, offset)
        return reader.read_new(), reader.offset

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def archive(self, relative: str) -> tuple[bool, bytes] | None:
        """``(is_directory, bytes)`` of a path under the work directory: a directory as ``.tar.gz``,
        a file as is; None when it is gone."""
        assert self.work_dir is not None
        path = self.work_dir / relative
        if path.is_dir():
            return True, _tar_directory(path)
        return (False, path.read_bytes()) if path.is_file() else None

    def log_tail(self, lines: int) -> str:
        assert self.work_dir is not None
        return read_log_tail(self.work_dir / LOG_FILE, lines)

    def cleanup(self, remove: bool) -> None:
        if remove and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)


RemoteRunner = ray.remote(TrainingRunner)


class RayHandle:
    """A training process in a Ray actor, seen by the worker like a local process."""

    def __init__(self, actor: Any, output_dir: Path, *, copy_outputs: bool, timeout: float):
        self.actor = actor
        self.output_dir = output_dir
        self.copy_outputs = copy_outputs
        self.timeout = timeout
        self.offset = 0
        self.exit_code: int | None = None
        self.description = f"ray actor {actor._actor_id.hex()[:12]}"

    def _call(self, method: str, *args: Any) -> Any:
        return ray.get(getattr(self.actor, method).remote(*args), timeout=self.timeout)

    def poll(self) -> int | None:
        if self.exit_code is None:
            try:
                self.exit_code = self._call("poll")
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                self.exit_code = KILLED
        return self.exit_code

    def read_events(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]]
        try:
            lines, self.offset = self._call("read_events", self.offset)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            return []
        if self.copy_outputs:
            for line in lines:
                self._fetch_outputs(line)
        return lines

    def _fetch_outputs(self, line: dict[str, Any]) -> None:
        """Bring what a checkpoint or result line names from the actor's node before the worker reads it."""
        kind = line.get("kind")
        if kind == "checkpoint":
            # The full state saved with it too, so a later attempt on another node can resume.
            names = [line["path"], STATE_DIR]
        elif kind == "stopped":
            names = [STATE_DIR]
        elif kind == "result":
            names = [line.get("adapter_path", "adapter"), line.get("results_csv", "results.csv")]
        elif kind == "checkpoint_deleted":
            shutil.rmtree(self.output_dir / f"checkpoints/step-{line['step']}", ignore_errors=True)
            return
        else:
            return
        for name in names:
            found = self._call("archive", name)
            if found is None:
                continue
            is_directory, data = found
            target = self.output_dir / name
            if is_directory:
                _untar_into(data, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)

    def _signal(self, signum: int) -> None:
        try:
            self._call("signal", int(signum))
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
            pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        ray.kill(self.actor, no_restart=True)

    def wait(self, timeout: float) -> int | None:
        if self.exit_code is not None:
            return self.exit_code
        code: int | None
        try:
            code = ray.get(self.actor.wait.remote(timeout), timeout=timeout + self.timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            code = KILLED
        except ray.exceptions.GetTimeoutError:
            return None
        self.exit_code = code
        return code

    def log_tail(self, lines: int = 3) -> str:
        try:
            return str(self._call("log_tail", lines))
        except Exception:  # the actor (and its log) may be gone
            return read_log_tail(self.output_dir / LOG_FILE, lines)

    def close(self) -> None:
        if self.copy_outputs:
            try:
                found = self._call("archive", LOG_FILE)
                if found is not None:
                    (self.output_dir / LOG_FILE).write_bytes(found[1])
                self._call("cleanup", True)
            except Exception:  # the actor may be gone; its log then stays on its node
                pass
        ray.kill(self.actor, no_restart=True)


class RayExecutor:
    """Launches each job in a :class:`TrainingRunner` actor (connecting to Ray on first use)."""

    def __init__(self, settings: Settings, *, share_files: bool | None = None, call_timeout: float = 60.0):
        """``share_files``: whether the actor may use the worker's paths; None decides by node."""
        self.settings = settings
        self.share_files = share_files
        self.call_timeout = call_timeout
        self._connected_here = False

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        self._connected_here = True
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=self.settings.ray_num_cpus, include_dashboard=False, log_to_driver=False)
        log.info("connected to Ray: %s", ray.get_runtime_context().gcs_address)

    def launch(self, job: JobRow, spec_path: Path, output_dir: Path) -> RayHandle:
        self._connect()
        spec = json.loads(spec_path.read_text())
        resources = job_resources(self.settings, spec["base_model"])
        workers = self.settings.ray_train_workers
        if workers > 1:
            # The actor only drives a TorchTrainer; its workers hold the CPUs and GPUs.
            command = ["-m", "openft.training.distributed", "--workers", str(workers)]
            command += ["--cpus-per-worker", str(resources["num_cpus"])]
            command += ["--gpus-per-worker", str(resources["num_gpus"])]
            resources = {"num_cpus": 0, "num_gpus": 0, "memory": BASE_MEMORY_BYTES}
        else:
            command = ["-m", "openft.training"]
        # Ray's annotations give an actor's methods no `.remote`, so the handle is used untyped.
        actor: Any = RemoteRunner.options(max_concurrency=4, **resources).remote()
        # The worker cannot heartbeat while it waits, so a cluster without room fails the launch.
        try:
            node = ray.get(actor.node_id.remote(), timeout=self.settings.heartbeat_timeout_seconds / 2)
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor, no_restart=True)
            raise RuntimeError(f"no Ray node could place the job's actor in time (it asks for {resources})") from None
        share = self.share_files
        if share is None:
            share = node == ray.get_runtime_context().get_node_id()
        inputs: dict[str, bytes] = {}
        state: tuple[str, bytes] | None = None
        if not share:
            for key in ("training_file", "validation_file"):
                if spec.get(key):
                    inputs[Path(spec[key]).name] = Path(spec[key]).read_bytes()
            if spec.get("resume_from"):
                resume = Path(spec["resume_from"])
                state = (str(resume.relative_to(output_dir)), _tar_directory(resume))
        work_dir = str(output_dir) if share else None
        ray.get(actor.start.remote(spec, work_dir, inputs, command, state), timeout=None)
        log.info("job %s: ray actor with %s (files %s)", job.id, resources, "shared" if share else "copied")
        return RayHandle(actor, output_dir, copy_outputs=not share, timeout=self.call_timeout)

    def prepare(self) -> None:
        return None  # actors start per job, on whichever node has room

    def shutdown(self) -> None:
        if self._connected_here and ray.is_initialized():
            ray.shutdown()
            self._connected_here = False
