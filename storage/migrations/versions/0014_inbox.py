"""the inbox: Telegram updates stored before they are acknowledged, handled under a lease

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UNHANDLED = "handled_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_key", sa.BigInteger(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("handled_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_inbox")),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inbox_unhandled",
            ["update_id"],
            sqlite_where=sa.text(UNHANDLED),
            postgresql_where=sa.text(UNHANDLED),
        )
        batch_op.create_index(
            "ix_inbox_chat_unhandled",
            ["chat_key", "update_id"],
            sqlite_where=sa.text(UNHANDLED),
            postgresql_where=sa.text(UNHANDLED),
        )
        batch_op.create_index("ix_inbox_handled_at", ["handled_at"])


def downgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_handled_at")
        batch_op.drop_index("ix_inbox_chat_unhandled")
        batch_op.drop_index("ix_inbox_unhandled")
    op.drop_table("inbox")
