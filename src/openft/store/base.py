"""The Store seam: what openft asks of its persistence, as ``typing.Protocol``s, and the values they carry.

Two implementations pass one contract suite (``tests/integration/test_store_contract.py``):
:class:`~openft.store.database.SqlStore` (SQLAlchemy Core on SQLite or PostgreSQL; ``open_store``) and
:class:`~openft.store.memory.InMemoryStore` (plain dicts under a lock, for unit tests of the layers above).
Services (``jobs/``, ``files/``, ``serving/``, ``responses/``, ``evals/``, ``completions/``) take a
:class:`Store` (or one of its small protocols); nothing outside ``store/`` needs to know which one it got,
nor the SQL engine under it.

What joins the core protocol and what has a protocol of its own:

* **Core** (:class:`Store`): files, jobs (the queue: claim, compare-and-set, the one status writer
  ``change_job``), events, checkpoints, registered local models, and the former satellites that are only
  more reads and writes of those tables: job writes (``job_writes.py``), quotas (``count_jobs``), crash
  recovery (``held_jobs``, ``add_event_once``, ``add_checkpoint_once``, ``delete_checkpoints``) and file
  expiry (``expired_files``, ``delete_expired_files``).
* **Own small protocols**, reached through the core store's attributes so one object carries them all and
  the memory twins share one state (a job's terminal change writes webhook outbox rows):
  :class:`~openft.store.keys.ApiKeyRecords` (``store.api_keys``),
  :class:`~openft.store.permissions.PermissionRecords` (``store.permissions``),
  :class:`~openft.store.uploads.UploadRecords` (``store.uploads``),
  :class:`~openft.store.webhooks.WebhookRecords` (``store.webhooks``),
  :class:`~openft.store.responses.ResponseRecords` (``store.responses``: stored Responses API objects),
  :class:`~openft.store.evals.EvalRecords` (``store.evals``: evals, the eval runs' queue, output items) and
  :class:`~openft.store.completions.CompletionRecords` (``store.completions``: chat completions stored
  with ``store: true``). Their memory twins live in ``memory_records.py``, ``memory_evals.py`` and
  ``memory_answers.py``.
* **Rate limits** (``rate_limits.py``) implement the ``limits`` library's own ``Storage`` seam, whose
  memory twin is that library's ``MemoryStorage`` (``OPENFT_RATE_LIMIT_STORAGE_URL=memory://``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from openft.store.rows import CheckpointRow, EventRow, FileRow, JobRow

if TYPE_CHECKING:
    from openft.store.completions import CompletionRecords
    from openft.store.evals import EvalRecords
    from openft.store.keys import ApiKeyRecords
    from openft.store.permissions import PermissionRecords
    from openft.store.responses import ResponseRecords
    from openft.store.uploads import UploadRecords
    from openft.store.webhooks import WebhookRecords


class Conflict(Exception):
    """A row with the same unique key (an id, a checkpoint's model name) already exists."""


@dataclass(frozen=True)
class NewEvent:
    """A job event written with a job change."""

    message: str
    level: str = "info"
    type: str = "message"
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A webhook event queued (one outbox row per subscribed endpoint) when a job change commits."""

    event_type: str
    event_id: str
    payload: str


@dataclass(frozen=True)
class JobChange:
    """What :meth:`Store.change_job` writes, and on which conditions."""

    expect_status: tuple[str, ...]
    """The job must be in one of these."""
    worker_id: str | None = None
    """When set, the job must be held by this worker."""
    stale_before: float | None = None
    """When set, the holder's heartbeat must be older than this (a takeover of a silent worker)."""
    status: str | None = None
    """The new status; None leaves it as it is."""
    values: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[NewEvent, ...] = ()
    webhook: WebhookEvent | None = None


class Store(Protocol):
    """Every read and write of openft's core state. Each method is one transaction.

    Reads scoped by ``organization_id`` treat another organization's row as absent. Listings are pages:
    ``(rows, has_more)``, newest first unless said otherwise, ``after`` naming the last row of the
    previous page (an unknown cursor gives the first page).
    """

    @property
    def api_keys(self) -> ApiKeyRecords: ...
    @property
    def permissions(self) -> PermissionRecords: ...
    @property
    def uploads(self) -> UploadRecords: ...
    @property
    def webhooks(self) -> WebhookRecords: ...
    @property
    def responses(self) -> ResponseRecords: ...
    @property
    def evals(self) -> EvalRecords: ...
    @property
    def completions(self) -> CompletionRecords: ...

    # -- files ---------------------------------------------------------------------------------
    def insert_file(self, row: FileRow) -> None:
        """Raises: Conflict: a file with that id exists."""
        ...

    def get_file(self, file_id: str, organization_id: str | None = None) -> FileRow:
        """Raises: FileNotFound: absent, expired, or owned by another organization."""
        ...

    def list_files(
        self,
        organization_id: str,
        *,
        purpose: str | None = None,
        limit: int = 10000,
        order: str = "desc",
        after: str | None = None,
    ) -> tuple[list[FileRow], bool]:
        """The organization's unexpired files, in upload order (``order`` ``asc``) or newest first."""
        ...

    def delete_file(self, file_id: str, organization_id: str) -> FileRow:
        """Raises: FileNotFound: as :meth:`get_file`."""
        ...

    def expired_files(self, before: float, limit: int) -> list[tuple[str, str]]:
        """``(id, blob_path)`` of up to ``limit`` files that expired at or before ``before``, oldest first."""
        ...

    def delete_expired_files(self, file_ids: Sequence[str], before: float) -> int:
        """Delete the rows of ``file_ids`` that expired at or before ``before``; how many went."""
        ...

    # -- jobs ----------------------------------------------------------------------------------
    def insert_job(self, row: JobRow) -> None:
        """Raises: Conflict: a job with that id exists."""
        ...

    def get_job(self, job_id: str, organization_id: str | None = None) -> JobRow:
        """Raises: JobNotFound: absent or owned by another organization."""
        ...

    def list_jobs(
        self, organization_id: str, *, after: str | None = None, limit: int = 20, metadata: dict[str, str] | None = None
    ) -> tuple[list[JobRow], bool]:
        """Newest first; ``metadata`` keeps jobs carrying every given key/value pair."""
        ...

    def update_job(
        self,
        job_id: str,
        *,
        expect_status: str | Iterable[str] | None = None,
        expect_worker: str | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set of a job's fields other than ``status``; whether the row changed.

        Raises:
            TypeError: ``values`` names ``status`` (that changes only through :meth:`change_job`).
        """
        ...

    def change_job(self, job_id: str, change: JobChange) -> JobRow | None:
        """Apply ``change`` (status, fields, events, webhook outbox rows) in one transaction; the job as
        written, or None when its conditions did not hold and nothing was written."""
        ...

    def claim_next_job(
        self,
        worker_id: str,
        status: str,
        *,
        to_status: str | None = None,
        now: float | None = None,
        stale_before: float | None = None,
    ) -> JobRow | None:
        """Atomically take the oldest job in ``status`` that no live worker holds: one with no worker, or
        whose worker's heartbeat is older than ``stale_before``. It gets ``worker_id``, a heartbeat at
        ``now`` and, if given, ``to_status``. None when there is nothing to claim."""
        ...

    def find_job_by_model(self, model_name: str) -> JobRow | None:
        """The job whose fine-tuned model is ``model_name`` (deleted models excluded)."""
        ...

    def list_fine_tuned_jobs(self, organization_id: str) -> list[JobRow]:
        """The organization's jobs with a (not deleted) fine-tuned model, oldest first."""
        ...

    def count_jobs(self, organization_id: str, statuses: Iterable[str]) -> int:
        """How many of the organization's jobs are in one of ``statuses``."""
        ...

    def held_jobs(self, statuses: Iterable[str]) -> list[JobRow]:
        """Jobs in ``statuses`` that some worker holds, whatever the age of its heartbeat."""
        ...

    # -- events --------------------------------------------------------------------------------
    def append_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = "info",
        type: str = "message",
        data: dict[str, Any] | None = None,
        created_at: int | None = None,
    ) -> EventRow:
        """Append an event (a new id; ``created_at`` defaults to now)."""
        ...

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[EventRow], bool]:
        """Newest first."""
        ...

    def count_events(self, job_id: str) -> int: ...

    def event_ids(self, job_id: str) -> set[str]:
        """Ids of every event the job has."""
        ...

    def add_event_once(
        self, job_id: str, event: NewEvent, *, event_id: str, held_by: str, statuses: Iterable[str]
    ) -> bool:
        """Write ``event`` as ``event_id`` unless that id exists, and only while worker ``held_by`` holds
        the job in one of ``statuses``; whether it was written."""
        ...

    # -- checkpoints ---------------------------------------------------------------------------
    def add_checkpoint(self, row: CheckpointRow) -> None:
        """Raises: Conflict: a checkpoint with that id or model name exists."""
        ...

    def add_checkpoint_once(self, row: CheckpointRow, *, held_by: str, statuses: Iterable[str]) -> bool:
        """Record a checkpoint unless the job has one at that step, only while worker ``held_by`` holds the
        job in one of ``statuses``; whether it was written."""
        ...

    def delete_checkpoints(
        self, job_id: str, *, held_by: str, statuses: Iterable[str], step: int | None = None
    ) -> bool:
        """Delete the job's checkpoint at ``step`` (all when None) only while worker ``held_by`` holds the
        job in one of ``statuses``; whether it still did."""
        ...

    def list_checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> tuple[list[CheckpointRow], bool]:
        """Newest first, like OpenAI's listing."""
        ...

    def get_checkpoint_by_model(self, name: str) -> CheckpointRow | None: ...

    def list_organization_checkpoints(self, organization_id: str) -> list[CheckpointRow]:
        """The organization's checkpoints whose job's model is not deleted, oldest first."""
        ...

    # -- local models --------------------------------------------------------------------------
    def add_local_model(self, model_id: str, path: str) -> None:
        """Register (or re-register) a local model directory under ``model_id``."""
        ...

    def local_models(self) -> dict[str, str]:
        """Registered local models: id to path."""
        ...
