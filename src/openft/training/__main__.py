"""Run one training job: ``python -m openft.training SPEC.json``.

``python -m openft.training --standby`` is the same run, started before its job exists: it imports
torch, transformers, PEFT and the recipes first (seconds of a job's start-up), then waits for one
line on stdin naming SPEC.json, moves into that directory, sends its output to ``train.log`` there
and runs it. The local executor keeps one such process ready (``jobs/executors/local.py``). An
empty stdin (the worker stopped) ends it with status 0.

Reads the ``TrainingSpec`` in SPEC.json (written by the worker), sets torch's thread count
(``spec.threads``, or every core) and runs the recipe of ``spec.method``. Everything the run
produces goes to ``spec.output_dir``: event lines in ``events.jsonl`` (see ``training/events.py``),
checkpoints, the adapter and ``results.csv``. Nothing is written to stdout; tracebacks and library
logs go to stderr.

Exit status: 0 when the recipe finished (its last event line is ``result``); 1 when it failed,
after an ``error`` event line (code ``invalid_training_file`` for bad training data, ``nan_loss`` or
``out_of_memory`` (see ``training/failures.py``), else ``training_failed``); 2 when SPEC.json cannot be
read (no event is written: its output_dir is unknown). A run stopped by SIGTERM (a pause) saves its state,
writes a ``stopped`` line and exits 0.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from openft.training.events import EventWriter
from openft.training.failures import describe_failure
from openft.training.protocol import LOG_FILE
from openft.training.spec import TrainingSpec


def main(argv: list[str] | None = None) -> int:
    """Run the spec named on the command line; returns the process exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--standby"]:
        return standby()
    if len(args) != 1:
        print("usage: python -m openft.training SPEC.json | --standby", file=sys.stderr)
        return 2
    try:
        spec = TrainingSpec.read(Path(args[0]))
    except (OSError, ValueError, TypeError) as exc:
        print(f"cannot read training spec {args[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    events = EventWriter(Path(spec.output_dir))
    try:
        import torch
        import transformers

        from openft.data.chat_messages import TrainingDataError
        from openft.training.recipes import RECIPES

        transformers.utils.logging.disable_progress_bar()
        torch.set_num_threads(spec.threads or os.cpu_count() or 1)
        if spec.integrations:
            from openft.training.tracking import Tracking

            events.tracking = Tracking(spec, lambda text: events.message(text, level="warn"))
        if spec.method not in RECIPES:
            raise ValueError(f"unknown training method {spec.method!r}; expected one of {', '.join(RECIPES)}")
        try:
            RECIPES[spec.method](spec, events)
        except TrainingDataError as exc:
            traceback.print_exc()
            events.error("invalid_training_file", str(exc), param=exc.param)
            return 1
    except BaseException as exc:
        traceback.print_exc()
        events.error(*describe_failure(exc))  # a named code (nan_loss, out_of_memory) or training_failed
        return 1
    finally:
        events.close()
    return 0


def standby() -> int:
    """Import the training stack now; then run the spec whose path arrives on stdin."""
    import peft  # noqa: F401  (imported for its start-up cost, before the job arrives)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from openft.training.recipes import dpo, reinforcement, supervised  # noqa: F401

    line = sys.stdin.readline().strip()
    if not line:
        return 0
    spec_path = Path(line)
    os.chdir(spec_path.parent)
    log = os.open(spec_path.parent / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return main([line])


if __name__ == "__main__":
    sys.exit(main())
