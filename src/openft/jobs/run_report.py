"""What a job's events say around its training: the estimate before it, and what the run learned after.

* When the worker validates a job's files it also estimates the job (``jobs/estimate.py``, from this
  server's measured throughput, never calibrating) and keeps it beside the job's pinned input files
  (which every attempt keeps, ``jobs/recovery.py``);
  ``Fine-tuning job started`` is followed by an event stating it.
* While the job trains, :func:`observe_line` keeps the few numbers the summary needs (final losses,
  each epoch's validation losses), from every attempt's lines.
* When it succeeds, the events end (before OpenAI's two closing lines) with a summary a person can act
  on: final train and validation loss, whether validation loss rose in the last epoch (overfitting) and
  which checkpoint has the lowest validation loss; then the estimate beside the real running time and
  trained tokens. The job's throughput becomes this server's record for its model, method and device.

Every step here is best effort: an estimate or summary that cannot be made never fails a job.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openft.jobs import throughput
from openft.jobs.claim import ClaimLost
from openft.jobs.estimate import (
    InputFile,
    estimate_files,
    eval_tokens,
    options_of,
    throughput_cache_dir,
    throughput_key,
)
from openft.jobs.lineage import foundation
from openft.jobs.recovery import INPUTS_DIR
from openft.jobs.transitions import NewEvent
from openft.settings import Settings
from openft.store import Store
from openft.store.rows import CheckpointRow, JobRow

log = logging.getLogger(__name__)

ESTIMATE_FILE = f"{INPUTS_DIR}/estimate.json"


class EstimateTimeUp(Exception):
    """The worker's estimate of a job used up its time (``jobs/validating.py``); the job goes on without one."""


SOURCES = {"previous_jobs": "this server's previous job", "calibration": "a calibration run"}


def save_estimate(
    settings: Settings,
    store: Store,
    job: JobRow,
    training: InputFile,
    validation: InputFile | None,
    *,
    progress: Callable[[], None] | None = None,
) -> None:
    """Estimate a job whose files passed validation, into ``{jobs_dir}/{id}/inputs/estimate.json``."""
    try:
        base = foundation(store, settings, job, store.local_models())  # a fine-tuned parent's base
        if base is None:
            return
        est = estimate_files(settings, base, job.method, training, validation, progress=progress)
        target = settings.jobs_dir / job.id / ESTIMATE_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(est.model_dump_json())
    except ClaimLost:
        raise
    except EstimateTimeUp as exc:
        log.info("job %s: starts without an estimate: %s", job.id, exc)
    except Exception:  # the estimate is information; a job never fails for want of it
        log.exception("job %s: could not estimate it", job.id)


def _read_estimate(output_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((output_dir / ESTIMATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def start_events(output_dir: Path) -> list[NewEvent]:
    """The estimate's event, written with ``Fine-tuning job started``; none when there is no estimate."""
    est = _read_estimate(output_dir)
    if est is None:
        return []
    gib = 1024**3
    when = "time unknown (no throughput measured here yet)"
    if est.get("estimated_seconds") is not None:
        source = SOURCES.get(est["estimated_seconds_source"], est["estimated_seconds_source"])
        when = f"about {_duration(est['estimated_seconds'])} (throughput of {source})"
    memory = f"peak memory about {est['peak_memory_bytes'] / gib:.2f} GiB of {est['memory_limit_bytes'] / gib:.1f} GiB"
    text = f"Estimate: {est['trained_tokens']:,} trained tokens in {est['n_steps']} steps, {when}; {memory}"
    if not est.get("fits"):
        return [NewEvent(f"{text}. {est.get('reason') or ''}".strip(), level="warn", data={"estimate": est})]
    return [NewEvent(text, data={"estimate": est})]


def observe_line(seen: dict[str, Any], line: dict[str, Any]) -> None:
    """Keep what the summary needs from one event line (lines repeat when an attempt re-reads them): the
    device from the model-loaded message, losses from metrics lines."""
    if line.get("kind") == "message" and isinstance((line.get("data") or {}).get("device"), str):
        seen["device"] = line["data"]["device"]
    if line.get("kind") != "metrics":
        return
    seen["last"] = line
    epoch = int(line.get("epoch") or 0)
    valid = line.get("full_valid_loss", line.get("valid_loss"))
    if valid is None:
        return
    per_epoch: dict[int, dict[int, float]] = seen.setdefault("valid", {})
    per_epoch.setdefault(epoch, {})[int(line["step"])] = float(valid)
    if line.get("full_valid_loss") is not None:
        seen.setdefault("epoch_end", {})[epoch] = (int(line["step"]), float(line["full_valid_loss"]))


def _overfitting(seen: dict[str, Any]) -> str | None:
    """Whether validation loss rose over the last epoch: its end against the previous epoch's end (or, for
    a single epoch, against the lowest validation loss measured during it)."""
    ends: dict[int, tuple[int, float]] = seen.get("epoch_end") or {}
    if not ends:
        return None
    last_epoch = max(ends)
    end_step, end_loss = ends[last_epoch]
    if last_epoch - 1 in ends:
        before_step, before = ends[last_epoch - 1]
    else:
        during = {s: v for s, v in (seen.get("valid") or {}).get(last_epoch, {}).items() if s < end_step}
        if not during:
            return None
        before_step = min(during, key=lambda s: during[s])
        before = during[before_step]
    if end_loss > before:
        return (
            f"validation loss rose in the last epoch ({before:.3f} at step {before_step} -> {end_loss:.3f}): "
            "the model may be overfitting; fewer epochs, or the checkpoint below, may generalize better"
        )
    return f"validation loss fell in the last epoch ({before:.3f} at step {before_step} -> {end_loss:.3f})"


def _best_checkpoint(store: Store, job_id: str) -> CheckpointRow | None:
    rows, _ = store.list_checkpoints(job_id, limit=100)

    def loss(row: CheckpointRow) -> float | None:
        value = row.metrics.get("full_valid_loss", row.metrics.get("valid_loss"))
        return float(value) if value is not None else None

    scored = [r for r in rows if loss(r) is not None]
    return min(scored, key=lambda r: (loss(r), r.step_number)) if scored else None


def learned_event(store: Store, job: JobRow, seen: dict[str, Any]) -> NewEvent | None:
    """The summary of what the run learned; None when no metrics were seen."""
    last = seen.get("last")
    if last is None:
        return None
    parts = [f"final training loss {float(last['train_loss']):.3f}"]
    final_valid = last.get("full_valid_loss", last.get("valid_loss"))
    if final_valid is not None:
        parts.append(f"final validation loss {float(final_valid):.3f}")
    trend = _overfitting(seen)
    if trend is not None:
        parts.append(trend)
    best = _best_checkpoint(store, job.id)
    data: dict[str, Any] = {
        "train_loss": last["train_loss"],
        "valid_loss": final_valid,
        "overfitting": bool(trend and "rose" in trend),
    }
    if best is not None:
        best_loss = float(best.metrics.get("full_valid_loss", best.metrics.get("valid_loss", 0.0)))
        parts.append(f"lowest validation loss {best_loss:.3f} at {best.fine_tuned_model_checkpoint}")
        data["best_checkpoint"] = best.fine_tuned_model_checkpoint
    return NewEvent("Run summary: " + "; ".join(parts), data=data)


def finish_events(
    settings: Settings, store: Store, job: JobRow, output_dir: Path, seen: dict[str, Any], result: dict[str, Any]
) -> list[NewEvent]:
    """The summary events of a succeeded job, and its throughput kept as this server's record."""
    events: list[NewEvent] = []
    try:
        learned = learned_event(store, job, seen)
        if learned is not None:
            events.append(learned)
        current = store.get_job(job.id)
        seconds = time.time() - current.started_at if current.started_at else None
        trained = int(result.get("trained_tokens", 0))
        est = _read_estimate(output_dir)
        if seconds is not None:
            text = f"Ran {_duration(seconds)} and trained {trained:,} tokens"
            if est is not None:
                guess = est.get("estimated_seconds")
                when = _duration(guess) if guess is not None else "unknown"
                text += f" (estimated: {when}, {est['trained_tokens']:,} tokens)"
            data = {"seconds": round(seconds, 1), "trained_tokens": trained, "estimate": est}
            events.append(NewEvent(text, data=data))
        _record_throughput(settings, job, current.attempts, seen, seconds, est)
    except Exception:
        log.exception("job %s: could not summarize its run", job.id)
    return events


def _record_throughput(
    settings: Settings,
    job: JobRow,
    attempts: int,
    seen: dict[str, Any],
    seconds: float | None,
    est: dict[str, Any] | None,
) -> None:
    last = seen.get("last")
    if last is None or seconds is None or attempts > 0:
        return  # a re-queued job's running time includes its lost attempts
    device = str(seen.get("device") or "cpu")
    # Keyed by the base model, as estimates are (a job continuing a fine-tuned model trains its base).
    key = throughput_key(
        settings,
        (est or {}).get("model") or job.model,
        job.method["type"],
        options_of(job.method)["training_type"],
        device,
    )
    scored = 0
    valid = (est or {}).get("validation_file")
    if est is not None and valid:
        epochs = int(est["hyperparameters"]["n_epochs"])
        scored = eval_tokens(est["n_steps"], epochs, valid["n_trained_examples"], valid["n_tokens"])
    cache = throughput_cache_dir(settings)
    throughput.record_job(cache, key, job_id=job.id, last_metrics=last, seconds=seconds, eval_tokens=scored)
