"""vault: batch links (a bundle item and its members, albums as sent) and URL items

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("vault_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target_url", sa.Text(), nullable=True))
    op.create_table(
        "vault_batch_members",
        sa.Column("batch_id", BIG_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["vault_items.id"],
            name=op.f("fk_vault_batch_members_batch_id_vault_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["vault_items.id"],
            name=op.f("fk_vault_batch_members_item_id_vault_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", "position", name=op.f("pk_vault_batch_members")),
        sa.UniqueConstraint("batch_id", "item_id", name="uq_vault_batch_members_item"),
    )
    op.create_index("ix_vault_batch_members_item", "vault_batch_members", ["item_id"])
    op.create_table(
        "vault_album_parts",
        sa.Column("tenant_id", BIG_ID, nullable=False),
        sa.Column("media_group_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", BIG_ID, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_vault_album_parts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["vault_items.id"],
            name=op.f("fk_vault_album_parts_item_id_vault_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "media_group_id", "item_id", name=op.f("pk_vault_album_parts")
        ),
    )
    op.create_index("ix_vault_album_parts_created", "vault_album_parts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_vault_album_parts_created", table_name="vault_album_parts")
    op.drop_table("vault_album_parts")
    op.drop_index("ix_vault_batch_members_item", table_name="vault_batch_members")
    op.drop_table("vault_batch_members")
    with op.batch_alter_table("vault_items", schema=None) as batch_op:
        batch_op.drop_column("target_url")
