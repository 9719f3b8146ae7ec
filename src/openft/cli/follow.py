"""``openft jobs follow``: a live progress bar fed by a job's metrics events, until the job ends."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from openft.cli.options import console

TERMINAL = ("succeeded", "failed", "cancelled")


def _fmt(value: Any, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def _eta(job: Any, now: float) -> str:
    if not job.estimated_finish:
        return "-"
    left = max(0, int(job.estimated_finish - now))
    return f"{left // 60}:{left % 60:02d}"


def new_events(client: Any, job_id: str, seen: set[str]) -> list[Any]:
    """Events not seen yet, oldest first (pages newest-first until a seen one)."""
    fresh: list[Any] = []
    for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
        if event.id in seen:
            break
        fresh.append(event)
    seen.update(e.id for e in fresh)
    return list(reversed(fresh))


def follow_job(client: Any, job_id: str, *, poll: float = 1.0, out: Console | None = None) -> Any:
    """Show ``job_id``'s progress (step/total, train and validation loss, tokens/s, ETA) and its
    messages as they arrive; return the job once it has finished."""
    out = out or console
    seen: set[str] = set()
    last: dict[str, Any] = {}
    columns = (
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("train {task.fields[train]}  valid {task.fields[valid]}"),
        TextColumn("{task.fields[tps]} tok/s  ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task("", total=None, train="-", valid="-", tps="-", eta="-")
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            for event in new_events(client, job_id, seen):
                if event.type == "metrics" and event.data:
                    last.update({k: v for k, v in event.data.items() if v is not None})
                    if out.is_terminal:
                        continue  # the bar shows it
                stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
                progress.console.print(f"[dim]{stamp}[/] {event.message}", highlight=False)
            valid = last.get("full_valid_loss", last.get("valid_loss"))
            progress.update(
                task,
                description=job.status,
                completed=last.get("step", 0),
                total=last.get("total_steps"),
                train=_fmt(last.get("train_loss")),
                valid=_fmt(valid),
                tps=_fmt(last.get("tokens_per_second"), ",.0f"),
                eta=_eta(job, time.time()),
            )
            if job.status in TERMINAL:
                return job
            time.sleep(poll)
