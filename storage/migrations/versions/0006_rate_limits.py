"""rate limits shared across processes: fixed-window counters and the Reddit request budget

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 19:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("resets_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_counters")),
    )
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.create_index("ix_rate_counters_resets_at_ms", ["resets_at_ms"])
    op.create_table(
        "reddit_rate_budgets",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("next_slot_ms", sa.BigInteger(), nullable=True),
        sa.Column("interval_ms", sa.Float(), nullable=True),
        sa.Column("paused_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("used", sa.Integer(), nullable=True),
        sa.Column("remaining", sa.Float(), nullable=True),
        sa.Column("reset_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_reddit_rate_budgets")),
    )
    op.create_table(
        "reddit_rate_slots",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("busy_until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "slot", name=op.f("pk_reddit_rate_slots")),
    )


def downgrade() -> None:
    op.drop_table("reddit_rate_slots")
    op.drop_table("reddit_rate_budgets")
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_counters_resets_at_ms")
    op.drop_table("rate_counters")
