"""performance indexes: fine-tuned model lookup, per-organization job counts and checkpoint listing

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 02:00:00.000000

Each index turns a full scan that grows with the number of jobs into an index search:

* ``ix_jobs_fine_tuned_model``: resolving an ``ft:...`` model name (every chat completion on a
  fine-tuned model, and permission checks) scanned the whole jobs table.
* ``ix_jobs_org_status``: counting an organization's active jobs (the per-organization limit,
  checked on every job creation) visited every job of the organization.
* ``ix_job_checkpoints_org_seq``: listing an organization's checkpoints (``GET /v1/models``)
  scanned every checkpoint.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_fine_tuned_model", "jobs", ["fine_tuned_model"])
    op.create_index("ix_jobs_org_status", "jobs", ["organization_id", "status"])
    op.create_index("ix_job_checkpoints_org_seq", "job_checkpoints", ["organization_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_job_checkpoints_org_seq", table_name="job_checkpoints")
    op.drop_index("ix_jobs_org_status", table_name="jobs")
    op.drop_index("ix_jobs_fine_tuned_model", table_name="jobs")
