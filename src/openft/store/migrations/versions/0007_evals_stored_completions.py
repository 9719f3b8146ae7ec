"""evals, their runs and output items; stored chat completions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:45:00.000000

* ``evals``: an eval's data source config and testing criteria, per organization.
* ``eval_runs``: a run of an eval, claimed by one executor (``worker_id``, ``heartbeat_at``) and taken
  over when its heartbeat goes stale.
* ``eval_output_items``: one row per data source item of a run, unique per (run, item index) so a
  run taken over never grades an item twice.
* ``stored_completions`` and ``stored_completion_metadata``: chat completions created with
  ``store: true``, and their metadata as key/value rows so filters stay index searches.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("data_source_config", sa.JSON(), nullable=False),
        sa.Column("testing_criteria", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_evals_org_seq", "evals", ["organization_id", "seq"])
    op.create_table(
        "eval_runs",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("eval_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=1024), nullable=True),
        sa.Column("data_source", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("result_counts", sa.JSON(), nullable=False),
        sa.Column("per_testing_criteria_results", sa.JSON(), nullable=False),
        sa.Column("per_model_usage", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_eval_runs_eval_seq", "eval_runs", ["eval_id", "seq"])
    op.create_index("ix_eval_runs_status_seq", "eval_runs", ["status", "seq"])
    op.create_table(
        "eval_output_items",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("eval_id", sa.String(length=64), nullable=False),
        sa.Column("datasource_item_id", sa.Integer(), nullable=False),
        sa.Column("datasource_item", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_eval_output_items_run_seq", "eval_output_items", ["run_id", "seq"])
    op.create_index("ix_eval_output_items_run_status_seq", "eval_output_items", ["run_id", "status", "seq"])
    op.create_index("ix_eval_output_items_run_item", "eval_output_items", ["run_id", "datasource_item_id"], unique=True)
    op.create_table(
        "stored_completions",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=1024), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("completion", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_stored_completions_org_seq", "stored_completions", ["organization_id", "seq"])
    op.create_index("ix_stored_completions_org_model_seq", "stored_completions", ["organization_id", "model", "seq"])
    op.create_table(
        "stored_completion_metadata",
        sa.Column("completion_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("completion_id", "key"),
    )
    op.create_index("ix_stored_completion_metadata_kv", "stored_completion_metadata", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_stored_completion_metadata_kv", table_name="stored_completion_metadata")
    op.drop_table("stored_completion_metadata")
    op.drop_index("ix_stored_completions_org_model_seq", table_name="stored_completions")
    op.drop_index("ix_stored_completions_org_seq", table_name="stored_completions")
    op.drop_table("stored_completions")
    op.drop_index("ix_eval_output_items_run_item", table_name="eval_output_items")
    op.drop_index("ix_eval_output_items_run_status_seq", table_name="eval_output_items")
    op.drop_index("ix_eval_output_items_run_seq", table_name="eval_output_items")
    op.drop_table("eval_output_items")
    op.drop_index("ix_eval_runs_status_seq", table_name="eval_runs")
    op.drop_index("ix_eval_runs_eval_seq", table_name="eval_runs")
    op.drop_table("eval_runs")
    op.drop_index("ix_evals_org_seq", table_name="evals")
    op.drop_table("evals")
