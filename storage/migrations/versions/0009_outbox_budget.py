"""outbox: the send budget shared by every process (global pace, per-chat pace)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_budget",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("next_slot_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_outbox_budget")),
    )
    op.create_table(
        "outbox_chat_pace",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("next_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_outbox_chat_pace")),
    )
    with op.batch_alter_table("outbox_chat_pace", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_chat_pace_next_ms", ["next_ms"])


def downgrade() -> None:
    with op.batch_alter_table("outbox_chat_pace", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_chat_pace_next_ms")
    op.drop_table("outbox_chat_pace")
    op.drop_table("outbox_budget")
