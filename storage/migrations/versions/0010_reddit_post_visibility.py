"""reddit posts: "not visible to this account" is a state of its own, not a deletion

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 23:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reddit_posts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("hidden_since", storage.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("hidden_notified", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("reddit_posts", schema=None) as batch_op:
        batch_op.drop_column("hidden_notified")
        batch_op.drop_column("hidden_since")
