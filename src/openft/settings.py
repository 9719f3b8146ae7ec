"""One settings object, read from the environment (prefix ``OPENFT_``) at the entry points.

This is the only module that reads ``os.environ`` for openft's own configuration; everything
else receives a :class:`Settings` (or the few values it needs) as an argument.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of a server, a worker or a CLI command."""

    model_config = SettingsConfigDict(env_prefix="OPENFT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".openft")
    """Where data lives: the SQLite database, uploaded files, adapters, results, model cache."""

    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///{home}/openft.db``. PostgreSQL: ``postgresql+psycopg://...``."""

    host: str = "127.0.0.1"
    port: int = 8000

    max_file_bytes: int = 512 * 1024 * 1024
    """Largest file accepted by ``POST /v1/files`` (OpenAI's limit)."""

    worker_poll_seconds: float = 0.25
    """How often an idle worker looks for work and a busy one checks for cancellation."""

    heartbeat_timeout_seconds: float = 30.0
    """A job whose worker has not been heard from for this long is taken back from it."""

    max_job_attempts: int = 3
    """A job whose worker died is re-queued this many times before it fails."""

    save_state_every_steps: int | None = None
    """Steps between full-state checkpoints within an epoch (what a re-queued or resumed job continues
    from); unset: every ``save_state_every_seconds``. A full state is also saved at every epoch end."""

    save_state_every_seconds: float = 60.0
    """Wall-clock seconds between full-state checkpoints within an epoch when no step interval is set:
    a crash loses at most this much training (saves are spaced so they cost at most ~5% of it)."""

    stop_grace_seconds: float = 120.0
    """How long a pause (or a worker shutting down, which waits at most 10 s) lets the training
    process finish its step and save its state before it is killed."""

    training_threads: int | None = None
    """torch threads in the training process; default: all cores."""

    training_memory_limit_mb: float | None = Field(default=None, gt=0)
    """Memory a training process may use, in MiB; job estimates (``POST /v1/fine_tuning/jobs/estimate``)
    say ``fits: false`` above it. Unset: the training device's memory (RAM within the cgroup limit, or
    the GPU's)."""

    estimate_calibration_seconds: float = Field(default=60.0, ge=0)
    """The most a job estimate spends measuring throughput when this server has none for its model,
    method and device (a few training steps on the job's first examples, then cached); 0: never."""

    serving_threads: int | None = None
    """torch threads for inference in the server process; default: every core but one (at least one),
    leaving a core to the event loop that streams the tokens (``serving/pool.py``, ``default_threads``)."""

    serving_adapter_budget_mb: float = 1024
    """Most megabytes of LoRA adapter weights kept loaded per base model; least recently used go first."""

    serving_max_adapters: int = 64
    """Most LoRA adapters kept loaded per base model."""

    serving_batch_window_ms: float = 5
    """How long an idle model waits for more requests to start decoding them together."""

    serving_max_batch_rows: int = 32
    """Most answers (choices) one base model decodes at once; later requests wait for a free row."""

    serving_background_rows_with_live: int = Field(default=2, ge=1)
    """Most rows of background work (eval run items) a base model decodes while live requests (chat,
    completions, responses) decode or wait beside them; alone, background work may fill the batch."""

    serving_model_budget_mb: float | None = Field(default=None, gt=0)
    """Most megabytes of models kept loaded in a serving process (each counted as its parameter and
    buffer bytes plus its adapters' weights); beyond it the least recently used idle base model or full
    fine-tune is unloaded, and loaded again by its next request. A model with requests in flight is
    never unloaded (the budget is exceeded until it is idle), nor the most recently used one unless a
    load needs its room (a model larger than the budget is served, with a warning). Unset: half of the
    serving device's memory (RAM within the process's cgroup limit on CPU, the GPU's memory on CUDA)."""

    serving_decode: Literal["auto", "plain", "fast", "fast-bf16", "fast-int8"] = "auto"
    """Which forward pass decodes served models: ``plain`` is transformers'; ``fast`` a lean forward of
    torch ops over the model's own weights (the same greedy answers), ``fast-bf16``/``fast-int8`` the same
    over bf16 or int8 weight-only copies. ``auto``: on CUDA ``plain``, on CPU ``fast`` (the same greedy
    answers as the trained weights; int8 is faster but parts from them, so it is an opt-in)."""

    serving_preload: str = "recent"
    """Base models an API process loads in the background as it starts (``serving/warmup.py``):
    ``recent`` (the ones this home served last, at most 2), ``none``, or a comma-separated list of ids."""

    serving_generation_threads: int = Field(default=64, ge=1)
    """Threads an API process lends to inference requests (generation, and the model loading before
    it); more requests wait for one without holding a thread, so job, file and key requests never
    queue behind generation."""

    python_grader_timeout_seconds: float = 30.0
    """Wall-clock and CPU limit of one python grader run (``/v1/fine_tuning/alpha/graders/run``)."""

    allow_unconfined_python_graders: bool = False
    """Run python graders even where they cannot be confined (no bubblewrap, no user namespaces), with
    rlimits, Landlock and seccomp only: a grader can then read what the server's user can read. Off:
    they are refused with a 400. ``openft serve`` and ``openft worker`` log a warning when this applies."""

    eval_run_concurrency: int = Field(default=8, ge=1, le=256)
    """Items of one eval run answered (and graded) at once, so the serving engine batches them; while
    live requests decode, only ``serving_background_rows_with_live`` of them do."""

    eval_executor: bool = True
    """Each API process claims and executes queued eval runs in a background thread."""

    eval_poll_seconds: float = Field(default=0.5, gt=0)
    """How often an idle eval run executor looks for a queued run."""

    webhook_allow_private_addresses: bool = False
    """Let webhook endpoints name loopback, private, link-local and other non-public addresses (a
    receiver on the same host or network); a worker logs a warning when this is on. Cloud metadata
    addresses stay refused. Off: such URLs are refused when an endpoint is created and at every delivery."""

    organization_id: str = "org-personal"
    """Owner of everything on a single-user install (no API keys configured)."""

    max_request_bytes: int = 8 * 1024 * 1024
    """Largest request body (JSON) accepted; larger ones get 413 before they are read."""

    max_upload_part_bytes: int = 64 * 1024 * 1024
    """Largest part of an Upload (``POST /v1/uploads/{id}/parts``; OpenAI's limit)."""

    max_upload_bytes: int = 8 * 1024 * 1024 * 1024
    """Largest Upload (``POST /v1/uploads`` ``bytes``; OpenAI's limit)."""

    upload_expiry_seconds: int = 3600
    """An Upload not completed within this long expires; its parts are deleted."""

    file_expires_after_min_seconds: int = Field(default=3600, ge=1)
    """Smallest ``expires_after[seconds]`` a file (or an Upload's ``expires_after``) may ask for; OpenAI's
    minimum is an hour. An expired file answers 404 at once; its bytes go at the next sweep."""

    file_sweep_seconds: float = Field(default=60.0, gt=0)
    """How often each API process deletes the rows and bytes of files past their ``expires_at``."""

    max_examples_per_file: int = 1_000_000
    """A training or validation file with more examples fails validation."""

    max_active_jobs_per_organization: int = 50
    """Jobs an organization may have validating, queued, running or paused at once (more: 429)."""

    api_read_threads: int = Field(default=2, ge=1)
    """Threads that run the API's database reads (see ``api/reads.py``); more adds GIL contention, not speed."""

    requests_per_minute: int = 3000
    """Requests per minute per API key (more: 429 with ``Retry-After``); 0 turns the limit off."""

    rate_limit_storage_url: str | None = None
    """Where every API process of a deployment counts requests per key: unset, a table of the database;
    or a ``limits`` storage URL such as ``redis://127.0.0.1:6379/0`` (``memory://`` counts per process)."""

    rate_limit_fail_open: bool = False
    """Let requests through, logging a warning, when the rate-limit storage cannot be reached; by default
    such requests are refused with a 503 (the limit is not silently lifted)."""

    executor: Literal["local", "ray"] = "local"
    """Where a worker runs training: ``local`` (a child process) or ``ray`` (a Ray actor; ``RAY_ADDRESS``
    names the cluster, else a local Ray is started)."""

    standby_training_process: bool = True
    """``local`` executor: keep one training process with torch and the recipes already imported while
    the worker is idle, so a job starts seconds sooner (it costs that process's memory, ~400 MB)."""

    ray_num_cpus: int | None = None
    """CPUs of the local Ray started when ``RAY_ADDRESS`` is unset; default: all cores."""

    ray_train_workers: int = 0
    """Ray Train data-parallel workers per job (``ray`` executor); 0 or 1 runs one process, more use
    TorchTrainer with DDP (one GPU each when ``ray_gpus_per_worker`` > 0)."""

    ray_gpus_per_worker: float = 0.0
    """GPUs a Ray training process asks for (each Ray Train worker gets this many)."""

    storage_url: str | None = None
    """fsspec URL of the blob storage shared by API replicas and workers (``s3://bucket/openft``,
    ``gs://...``, ``file:///shared/openft``); unset: blobs stay under ``home`` (see ``store/blobs.py``)."""

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'openft.db'}"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.files_dir, self.jobs_dir, self.models_dir):
            path.mkdir(parents=True, exist_ok=True)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
