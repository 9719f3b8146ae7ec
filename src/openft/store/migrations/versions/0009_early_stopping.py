"""early stopping: what it chose, on the job

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 13:30:00.000000

* ``jobs.openft``: the job object's ``openft`` extension (JSON): the best step and validation loss
  early stopping served, and the step it stopped at; null for a job without early stopping.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("openft", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("openft")
