"""reddit_posts.parent_fullname: comments (/reply) queue as posts of kind "comment"

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 23:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reddit_posts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_fullname", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reddit_posts", schema=None) as batch_op:
        batch_op.drop_column("parent_fullname")
