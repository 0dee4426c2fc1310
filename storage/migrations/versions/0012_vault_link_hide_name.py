"""vault links can hide the file's name on the HTTP claim page

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 23:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vault_links") as batch:
        batch.add_column(
            sa.Column("hide_name", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("vault_links") as batch:
        batch.drop_column("hide_name")
