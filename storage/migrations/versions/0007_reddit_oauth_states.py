"""reddit_oauth_states: pending "Connect with Reddit" requests (hashed single-use state)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reddit_oauth_states",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("operator_user_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_reddit_oauth_states_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reddit_oauth_states")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_reddit_oauth_states_state_hash")),
    )
    with op.batch_alter_table("reddit_oauth_states", schema=None) as batch_op:
        batch_op.create_index("ix_reddit_oauth_states_expires_at", ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("reddit_oauth_states", schema=None) as batch_op:
        batch_op.drop_index("ix_reddit_oauth_states_expires_at")
    op.drop_table("reddit_oauth_states")
