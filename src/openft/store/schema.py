"""Tables. Changes go through a new Alembic migration in ``store/migrations/versions``.

Every table has an integer ``seq`` primary key: cursors and "newest first" orderings use it,
so listing stays index-backed however many rows there are.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# BigInteger autoincrement is not an alias of ROWID on SQLite; Integer.with_variant keeps both happy.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

files = Table(
    "files",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("filename", String(512), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger),
    Column("blob_path", Text, nullable=False),
    Index("ix_files_org_seq", "organization_id", "seq"),
    # Only expiring files are indexed: the sweep finds those past their time without a scan.
    Index(
        "ix_files_expires_at",
        "expires_at",
        sqlite_where=text("expires_at IS NOT NULL"),
        postgresql_where=text("expires_at IS NOT NULL"),
    ),
)

jobs = Table(
    "jobs",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("model", String(512), nullable=False),
    Column("training_file", String(64), nullable=False),
    Column("validation_file", String(64)),
    Column("status", String(32), nullable=False),
    Column("method", JSON, nullable=False),
    Column("hyperparameters", JSON, nullable=False),
    Column("suffix", String(64)),
    Column("seed", BigInteger, nullable=False),
    Column("metadata", JSON),
    Column("integrations", JSON),
    Column("model_name", String(1024), nullable=False),
    Column("fine_tuned_model", String(1024)),
    Column("error", JSON),
    Column("result_files", JSON, nullable=False),
    Column("trained_tokens", BigInteger),
    Column("estimated_finish", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("worker_id", String(128)),
    Column("heartbeat_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("model_deleted", Boolean, nullable=False, default=False),
    # Lineage (migration 0008): the job whose model or checkpoint this one starts from, and the root base.
    Column("parent_job_id", String(64)),
    Column("base_model", String(512)),
    # Early stopping (migration 0009): the job object's ``openft`` extension, once the job succeeded.
    Column("openft", JSON),
    Index("ix_jobs_org_seq", "organization_id", "seq"),
    Index("ix_jobs_status_seq", "status", "seq"),
    Index("ix_jobs_fine_tuned_model", "fine_tuned_model"),
    Index("ix_jobs_org_status", "organization_id", "status"),
)

job_metadata = Table(
    "job_metadata",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_job_metadata_kv", "key", "value"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("job_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("level", String(8), nullable=False),
    Column("type", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON),
    Index("ix_job_events_job_seq", "job_id", "seq"),
)

job_checkpoints = Table(
    "job_checkpoints",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("job_id", String(64), nullable=False),
    Column("organization_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("step_number", Integer, nullable=False),
    Column("fine_tuned_model_checkpoint", String(1100), nullable=False, unique=True),
    Column("metrics", JSON, nullable=False),
    Column("adapter_path", Text, nullable=False),
    Index("ix_job_checkpoints_job_seq", "job_id", "seq"),
    Index("ix_job_checkpoints_org_seq", "organization_id", "seq"),
)

local_models = Table(
    "local_models",
    metadata,
    Column("id", String(512), primary_key=True),
    Column("path", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("events", JSON),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_webhook_endpoints_org_seq", "organization_id", "seq"),
)

# The outbox: one row per (event, endpoint), written when a job finishes and sent by a worker's loop.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("event_id", String(64), nullable=False),
    Column("endpoint_id", String(64), nullable=False),
    Column("organization_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_attempt_at", Float),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint_seq", "endpoint_id", "seq"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("name", String(256)),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("redacted", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Index("ix_api_keys_org_seq", "organization_id", "seq"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("filename", String(512), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("mime_type", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("file_id", String(64)),
    Column("file_expires_after_seconds", BigInteger),
    Index("ix_uploads_org_seq", "organization_id", "seq"),
    Index("ix_uploads_status_expires", "status", "expires_at"),
)

upload_parts = Table(
    "upload_parts",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("upload_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("blob_path", Text, nullable=False),
    Index("ix_upload_parts_upload_seq", "upload_id", "seq"),
)

checkpoint_permissions = Table(
    "checkpoint_permissions",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("fine_tuned_model_checkpoint", String(1100), nullable=False),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_checkpoint_permissions_model_seq", "fine_tuned_model_checkpoint", "seq"),
    Index("ix_checkpoint_permissions_project", "project_id"),
)

# Requests per API key per window, shared by every API process (``store/rate_limits.py``): one row per
# ``limits`` key, its count reset in place when its window is over. UNLOGGED on PostgreSQL (migration 0005).
rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Evals (``store/evals.py``): an eval, its runs (claimed by one executor, heartbeating like jobs) and one
# output item per data source item of a run. Migration 0007.
evals = Table(
    "evals",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("name", String(512), nullable=False),
    Column("metadata", JSON),
    Column("data_source_config", JSON, nullable=False),
    Column("testing_criteria", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_evals_org_seq", "organization_id", "seq"),
)

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("eval_id", String(64), nullable=False),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("name", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("model", String(1024)),
    Column("data_source", JSON, nullable=False),
    Column("metadata", JSON),
    Column("error", JSON),
    Column("result_counts", JSON, nullable=False),
    Column("per_testing_criteria_results", JSON, nullable=False),
    Column("per_model_usage", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("worker_id", String(128)),
    Column("heartbeat_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Index("ix_eval_runs_eval_seq", "eval_id", "seq"),
    Index("ix_eval_runs_status_seq", "status", "seq"),
)

eval_output_items = Table(
    "eval_output_items",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("run_id", String(64), nullable=False),
    Column("eval_id", String(64), nullable=False),
    Column("datasource_item_id", Integer, nullable=False),
    Column("datasource_item", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("results", JSON, nullable=False),
    Column("sample", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_eval_output_items_run_seq", "run_id", "seq"),
    Index("ix_eval_output_items_run_status_seq", "run_id", "status", "seq"),
    Index("ix_eval_output_items_run_item", "run_id", "datasource_item_id", unique=True),
)

# Chat completions created with ``store: true`` (``store/completions.py``); metadata also as key/value
# rows so a metadata filter is an index search. Migration 0007.
stored_completions = Table(
    "stored_completions",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("model", String(1024), nullable=False),
    Column("metadata", JSON),
    Column("request", JSON, nullable=False),
    Column("completion", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_stored_completions_org_seq", "organization_id", "seq"),
    Index("ix_stored_completions_org_model_seq", "organization_id", "model", "seq"),
)

stored_completion_metadata = Table(
    "stored_completion_metadata",
    metadata,
    Column("completion_id", String(64), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_stored_completion_metadata_kv", "key", "value"),
)

# Stored Responses API objects (``store/responses.py``, migration 0006): ``body`` is the response as returned;
# a conversation is read back by following ``previous_response_id``.
responses = Table(
    "responses",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("organization_id", String(64), nullable=False),
    Column("project_id", String(64)),
    Column("model", String(1100), nullable=False),
    Column("previous_response_id", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_responses_org_seq", "organization_id", "seq"),
)

# The input items of each stored response's own turn, in order (``GET /v1/responses/{id}/input_items``).
response_input_items = Table(
    "response_input_items",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("response_id", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("item", Text, nullable=False),
    Index("ix_response_input_items_response_seq", "response_id", "seq"),
)
