"""stored responses of the Responses API and their input items

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:45:00.000000

* ``responses``: one row per stored ``response`` object (``store=true``), owned by an organization;
  ``body`` is the object as returned, output items included. ``previous_response_id`` links a
  conversation, which is read back by walking those links.
* ``response_input_items``: the input items of each response's own turn, in order, for
  ``GET /v1/responses/{id}/input_items`` and for continuing the conversation.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=1100), nullable=False),
        sa.Column("previous_response_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_responses_org_seq", "responses", ["organization_id", "seq"])
    op.create_table(
        "response_input_items",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("response_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("item", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_response_input_items_response_seq", "response_input_items", ["response_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_response_input_items_response_seq", table_name="response_input_items")
    op.drop_table("response_input_items")
    op.drop_index("ix_responses_org_seq", table_name="responses")
    op.drop_table("responses")
