"""Fills keyed by (trade id, order): a trade between two of the account's own orders carries
one trade id on both sides, and each side is a fill of its own order.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rules_engine.store._schema import MONEY, UtcDateTime

revision = "0002"
down_revision = "0001"

_COLUMNS = "trade_id, client_oid, price, size, fee, fee_currency, time"


def _create(name: str, *, composite: bool) -> None:
    op.create_table(
        name,
        sa.Column("trade_id", sa.String(64), primary_key=True),
        sa.Column(
            "client_oid",
            sa.String(40),
            sa.ForeignKey("orders.client_oid"),
            nullable=False,
            primary_key=composite,
        ),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("size", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=True),
        sa.Column("fee_currency", sa.String(16), nullable=True),
        sa.Column("time", UtcDateTime(), nullable=False),
    )


def _rebuild(composite: bool) -> None:
    _create("fills_rebuilt", composite=composite)
    op.execute(f"INSERT INTO fills_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM fills")
    op.drop_table("fills")
    op.rename_table("fills_rebuilt", "fills")
    op.create_index("ix_fills_client_oid", "fills", ["client_oid"])


def upgrade() -> None:
    _rebuild(composite=True)


def downgrade() -> None:
    _rebuild(composite=False)  # fails if a trade id now has two fills: they cannot be merged
