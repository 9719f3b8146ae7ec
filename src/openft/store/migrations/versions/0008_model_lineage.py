"""model lineage: a job may start from a fine-tuned model or checkpoint

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 12:50:00.000000

* ``jobs.parent_job_id``: the job whose model (or checkpoint, named by ``jobs.model``) a job starts
  from; null when it starts from a base model. Kept even after that model is deleted, so the child
  still finds the weights it was built over.
* ``jobs.base_model``: the root base model of the chain (what ``ft:{base}:...`` names); null when
  ``jobs.model`` is itself the base model.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_job_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("base_model", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("base_model")
        batch.drop_column("parent_job_id")
