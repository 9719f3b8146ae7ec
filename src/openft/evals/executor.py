"""The run executor: a thread of each API process that claims eval runs from the database and runs them.

It lives in the API process because answers come from that process's serving engine, the same one
that answers ``/v1/chat/completions``: a run's items are submitted concurrently (``eval_run_concurrency``
at a time), so the engine decodes them in shared batches, and live requests join the same batches
instead of waiting behind a whole run. Each run is held by one executor (``store/evals.py`` claims it
atomically) that heartbeats it from its own thread; a run whose heartbeat goes stale (its process died)
is claimed by another executor, which grades only the items that have no output item yet. A run that is
cancelled or deleted loses its hold at the next heartbeat: in-flight generations are cut short and
nothing more is written.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from openft.errors import NotFound, OpenFTError
from openft.evals import criteria, sources, spec
from openft.evals.report import summarize
from openft.files.service import FileService
from openft.graders.embeddings import available_embedder
from openft.graders.judge import ServingJudge
from openft.graders.runner import GraderContext
from openft.graders.sandbox import SandboxLimits
from openft.graders.service import private_dirs
from openft.graders.template import TemplateError, make_sample
from openft.serving.backend import SamplingParams, ServedModel
from openft.settings import Settings
from openft.store import Store
from openft.store.evals import COMPLETED, FAILED, EvalRecords, EvalRow, EvalRunRow, OutputItemRow
from openft.tenancy import Principal

log = logging.getLogger(__name__)


class _Hold:
    """The executor's hold on a run: a heartbeat every ``every`` seconds (with the counts so far) until
    stopped or until a heartbeat finds the run no longer held, which sets :attr:`lost`."""

    def __init__(self, evals: EvalRecords, run_id: str, worker_id: str, every: float, stop: threading.Event):
        self.evals, self.run_id, self.worker_id, self.every = evals, run_id, worker_id, every
        self._shutdown = stop
        self.lost = threading.Event()
        self.counts: dict[str, int] = {"total": 0, "passed": 0, "failed": 0, "errored": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"openft-eval-hold-{run_id}", daemon=True)

    def __enter__(self) -> _Hold:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            if self._shutdown.is_set():  # the process is stopping: leave the run to go stale and be taken over
                self.lost.set()
                return
            try:
                if not self.evals.hold_run(self.run_id, self.worker_id, result_counts=dict(self.counts)):
                    log.info("eval run %s: no longer held by this executor; it stops", self.run_id)
                    self.lost.set()
                    return
            except Exception:  # a database hiccup: beat again; the run goes stale if it lasts
                log.exception("eval run %s: heartbeat failed", self.run_id)


@dataclass
class _Run:
    """What every item of one run needs."""

    row: EvalRunRow
    eval: EvalRow
    served: ServedModel | None
    params: SamplingParams
    context: GraderContext
    hold: _Hold
    lock: threading.Lock = field(default_factory=threading.Lock)


class RunExecutor:
    """Claims and executes eval runs (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        files: FileService,
        resolve: Callable[[Principal, str], ServedModel],
        backend: Callable[[], Any],
    ):
        """``store`` holds the runs' queue (``store.evals``) and the stored completions a data source may
        select (``store.completions``); ``resolve`` is the serving registry's ``resolve``; ``backend``
        returns the serving backend."""
        self.settings = settings
        self.evals = store.evals
        self.completions = store.completions
        self.files = files
        self._resolve = resolve
        self._backend = backend
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.timeout = settings.heartbeat_timeout_seconds
        self.limits = SandboxLimits(
            wall_seconds=settings.python_grader_timeout_seconds, cpu_seconds=settings.python_grader_timeout_seconds
        )

    def run(self, stop: threading.Event) -> None:
        """Claim and execute runs until ``stop`` is set."""
        while not stop.is_set():
            try:
                row = self.evals.claim_run(self.worker_id, stale_before=time.time() - self.timeout)
            except Exception:
                log.exception("claiming an eval run failed")
                row = None
            if row is None:
                stop.wait(self.settings.eval_poll_seconds)
                continue
            self.execute(row, stop)

    def execute(self, row: EvalRunRow, stop: threading.Event | None = None) -> None:
        """Execute one claimed run to its end (or until it is no longer held)."""
        log.info("eval run %s: started by %s (attempt %d)", row.id, self.worker_id, row.attempts)
        every = min(2.0, self.timeout / 4)
        with _Hold(self.evals, row.id, self.worker_id, every, stop or threading.Event()) as hold:
            try:
                self._execute(row, hold)
            except Exception as exc:
                log.exception("eval run %s failed", row.id)
                error = {"code": "run_failed", "message": f"{type(exc).__name__}: {exc}"[:1000]}
                self.evals.finish_run(row.id, self.worker_id, FAILED, error=error)

    def _setup(self, row: EvalRunRow, hold: _Hold) -> _Run | None:
        try:
            eval_row = self.evals.get_eval(row.eval_id, row.organization_id)
        except NotFound:
            return None  # deleted under the run: nothing to write
        principal = Principal(organization_id=row.organization_id, project_id=row.project_id)
        served = None
        if row.model is not None:
            try:
                served = self._resolve(principal, row.model)
            except NotFound as exc:
                error = {"code": "model_not_found", "message": exc.message}
                self.evals.finish_run(row.id, self.worker_id, FAILED, error=error)
                return None
        context = GraderContext(
            judge=ServingJudge(self._resolve, self._backend, principal, background=True),
            embedder=available_embedder(),
            hide=private_dirs(self.settings),
            limits=self.limits,
            allow_unconfined=self.settings.allow_unconfined_python_graders,
        )
        params = sources.sampling(row.data_source.get("sampling_params"))
        return _Run(row, eval_row, served, params, context, hold)

    def _execute(self, row: EvalRunRow, hold: _Hold) -> None:
        run = self._setup(row, hold)
        if run is None:
            return
        principal = Principal(organization_id=row.organization_id, project_id=row.project_id)
        schema = spec.item_schema(run.eval.data_source_config)
        try:
            items = list(
                sources.items(
                    row.data_source,
                    schema,
                    open_file=lambda file_id: self.files.content(principal, file_id)[1],
                    select_stored=lambda where, limit: self.completions.select(row.organization_id, where, limit=limit),
                )
            )
        except NotFound as exc:
            self.evals.finish_run(
                row.id, self.worker_id, FAILED, error={"code": "file_not_found", "message": exc.message}
            )
            return
        done = self.evals.graded_item_ids(row.id)
        hold.counts["total"] = len(done)
        with ThreadPoolExecutor(self.settings.eval_run_concurrency, thread_name_prefix=f"openft-eval-{row.id}") as pool:
            for source_item in items:
                if source_item.index not in done:
                    pool.submit(self._grade_and_keep, run, source_item)
        if hold.lost.is_set():
            return
        outcome = summarize(run.eval.testing_criteria, self.evals.all_output_items(row.id))
        self.evals.finish_run(row.id, self.worker_id, COMPLETED, **outcome)
        log.info("eval run %s: completed (%s)", row.id, outcome["result_counts"])

    def _grade_and_keep(self, run: _Run, source_item: sources.SourceItem) -> None:
        if run.hold.lost.is_set():
            return
        try:
            output = self.grade_item(run, source_item)
        except Exception as exc:  # one item's failure is that item's error, never the run's
            log.exception("eval run %s: item %d", run.row.id, source_item.index)
            output = self._item_row(run, source_item, _error_sample(run, f"{type(exc).__name__}: {exc}"), [], "error")
        if run.hold.lost.is_set():
            return
        self.evals.add_output_item(output)
        with run.lock:
            run.hold.counts["total"] += 1
            key = {"pass": "passed", "fail": "failed"}.get(output.status, "errored")
            run.hold.counts[key] += 1

    def grade_item(self, run: _Run, source_item: sources.SourceItem) -> OutputItemRow:
        """Answer (for a completions run) and grade one item: its output item."""
        if source_item.error is not None:
            return self._item_row(run, source_item, _error_sample(run, source_item.error), [], "error")
        if run.served is not None:
            try:
                chat = sources.messages(run.row.data_source.get("input_messages"), source_item.item)
            except TemplateError as exc:
                return self._item_row(run, source_item, _error_sample(run, str(exc)), [], "error")
            try:
                generation = self._backend().chat(run.served, chat, run.params, cancel=run.hold.lost, background=True)
            except OpenFTError as exc:
                return self._item_row(run, source_item, _error_sample(run, exc.message, chat), [], "error")
            text = generation.choices[0].text
            namespace = {**make_sample(text), "model": run.row.model}
            usage = {
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
                "total_tokens": generation.total_tokens,
                "cached_tokens": 0,
            }
            finish = generation.choices[0].finish_reason
            sample = _sample(run, chat, text, finish, usage)
        else:
            given = source_item.sample or {}
            text = str(given.get("output_text", ""))
            namespace = {**make_sample(text), **given}
            sample = _sample(run, [], text, "stop", None, model=given.get("model"))
        grades = criteria.grade(run.eval.testing_criteria, namespace, source_item.item, run.context)
        sample["grader_usage"] = grades.usage
        return self._item_row(run, source_item, sample, grades.results, grades.status)

    def _item_row(
        self,
        run: _Run,
        source_item: sources.SourceItem,
        sample: dict[str, Any],
        results: list[dict[str, Any]],
        status: str,
    ) -> OutputItemRow:
        return OutputItemRow(
            id=f"outputitem_{uuid.uuid4().hex}",
            run_id=run.row.id,
            eval_id=run.row.eval_id,
            datasource_item_id=source_item.index,
            datasource_item=source_item.item,
            status=status,
            results=results,
            sample=sample,
            created_at=int(time.time()),
        )


def _sample(
    run: _Run,
    chat: list[dict[str, Any]],
    text: str,
    finish_reason: str,
    usage: dict[str, int] | None,
    *,
    model: Any = None,
) -> dict[str, Any]:
    """OpenAI's output item ``sample``: the model's input, output, usage, and the sampling parameters."""
    return {
        "input": [{"role": m["role"], "content": m["content"]} for m in chat],
        "output": [{"role": "assistant", "content": text}],
        "finish_reason": finish_reason,
        "model": run.row.model or (model if isinstance(model, str) else ""),
        "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0},
        "error": None,
        "temperature": run.params.temperature,
        "max_completion_tokens": run.params.max_tokens or 0,
        "top_p": run.params.top_p,
        "seed": run.params.seed or 0,
    }


def _error_sample(run: _Run, message: str, chat: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    sample = _sample(run, chat or [], "", "", None)
    sample["output"] = []
    sample["error"] = {"code": "invalid_item", "message": message[:2000]}
    return sample
