"""Data-parallel training of one job over several processes, driven by Ray Train's ``TorchTrainer``.

``python -m openft.training.distributed SPEC.json --workers N [--cpus-per-worker C] [--gpus-per-worker G]``
is what the Ray executor runs (instead of ``python -m openft.training``) when
``OPENFT_RAY_TRAIN_WORKERS`` is above 1. It joins the Ray cluster in ``RAY_ADDRESS`` (or starts a local
one) and runs N Ray Train workers, one training process each, joined by torch.distributed (NCCL
with GPUs, gloo on CPU). Each worker:

* trains on its own shard of the training file (lines ``rank, rank + N, ...``, padded by wrapping
  around so every shard has the same number of lines and so the same number of steps), with a
  per-process batch of ``ceil(batch_size / N)`` examples: one optimizer step still sees about
  ``batch_size`` examples in total;
* runs the ordinary recipe, whose training loop syncs its trainable parameters
  (``training/gradient_sync.py``): every gradient is averaged over the N processes as backward
  produces it (DDP's semantics; the recipe computes its loss outside ``Module.forward``, so
  ``DistributedDataParallel`` itself cannot be used), and all start from rank 0's weights, so the
  replicas stay identical;
* rank 0 writes the job's event lines, checkpoints and adapter into ``spec.output_dir``; the other
  ranks write into ``output_dir/ddp/rank-N`` (never read) and save no checkpoints.

Reported losses and token counts are rank 0's shard. Multi-node runs need ``output_dir`` on storage
every node sees (rank 0 may be placed on any node).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from openft.training.events import EventWriter
from openft.training.spec import TrainingSpec

SCRATCH = "ddp"


def shard_lines(path: Path, rank: int, world: int) -> list[bytes]:
    """Rank's lines of a JSONL file: every ``world``-th line, wrapped so all ranks get equally many."""
    lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]
    per_rank = math.ceil(len(lines) / world)
    return [lines[(rank + world * i) % len(lines)] for i in range(per_rank)]


def rank_spec(spec: TrainingSpec, rank: int, world: int) -> TrainingSpec:
    """The spec one data-parallel process runs (its shard, its share of the batch, its output dir)."""
    root = Path(spec.output_dir)
    scratch = root / SCRATCH / f"rank-{rank}"
    scratch.mkdir(parents=True, exist_ok=True)
    shard = scratch / "train.jsonl"
    shard.write_bytes(b"".join(shard_lines(Path(spec.training_file), rank, world)))
    return dataclasses.replace(
        spec,
        training_file=str(shard),
        batch_size=max(1, math.ceil(spec.batch_size / world)),
        output_dir=str(root if rank == 0 else scratch),
        keep_checkpoints=spec.keep_checkpoints if rank == 0 else 0,
    )


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: run the recipe on this rank's spec through the training entry point."""
    import ray.train
    import torch

    from openft.training.__main__ import main as run_spec

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if torch.cuda.is_available():
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    spec = rank_spec(TrainingSpec.from_dict(config["spec"]), rank, world)
    spec_path = Path(spec.output_dir) / (f"{SCRATCH}/spec-rank-0.json" if rank == 0 else "spec.json")
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec.write(spec_path)
    code = run_spec([str(spec_path)])
    if code != 0:
        raise RuntimeError(f"rank {rank}: training exited with status {code}")


def fit(spec: TrainingSpec, *, workers: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
    """Run ``spec`` on ``workers`` Ray Train workers; raises when any of them failed."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=math.ceil(workers * cpus_per_worker), include_dashboard=False, log_to_driver=False)
    resources: dict[str, float] = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": dataclasses.asdict(spec)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        run_config=RunConfig(name="train", storage_path=str(Path(spec.output_dir) / SCRATCH / "ray")),
    )
    trainer.fit()


def main(argv: list[str] | None = None) -> int:
    """Exit status as ``python -m openft.training``: 0 done, 1 failed (after an error line), 2 bad spec."""
    parser = argparse.ArgumentParser(prog="python -m openft.training.distributed")
    parser.add_argument("spec")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = parser.parse_args(argv)
    try:
        spec = TrainingSpec.read(Path(args.spec))
    except (OSError, ValueError, TypeError) as exc:
        print(f"cannot read training spec {args.spec}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    events_path = Path(spec.output_dir) / "events.jsonl"
    try:
        fit(spec, workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
    except Exception as exc:
        traceback.print_exc()
        # Rank 0 reports its own failure; anything else (another rank, the cluster) is reported here.
        if b'"kind": "error"' not in (events_path.read_bytes() if events_path.exists() else b""):
            events = EventWriter(Path(spec.output_dir))
            events.error("training_failed", f"Distributed training failed: {type(exc).__name__}: {exc}")
            events.close()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
