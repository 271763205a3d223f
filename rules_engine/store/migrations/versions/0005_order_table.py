"""The order table (`engine/_lifecycle.py`) decides every order's status: what it persists
beyond the status (`unknown` and `cancel_requested` are statuses of the same column) is the
cancel asked and not yet confirmed, and when the order's `cancel after` falls due.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rules_engine.store._schema import UtcDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # An order written before this migration has no cancel asked and no `cancel after` of
    # its own: recovery rebuilds that timer from its firing's time, as before.
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("cancel", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("cancel_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("cancel_at")
        batch.drop_column("cancel")
