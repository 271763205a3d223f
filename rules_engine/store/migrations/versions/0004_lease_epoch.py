"""The lease has an epoch, raised on every acquisition: the fence a firing's commit checks.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    # A lease written before this migration is at epoch 0: the next acquisition makes it 1.
    with op.batch_alter_table("lease") as batch:
        batch.add_column(sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("lease") as batch:
        batch.drop_column("epoch")
