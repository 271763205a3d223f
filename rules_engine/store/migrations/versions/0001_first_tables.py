"""The first tables: meta, rule versions and states, firings, orders, fills, events, lease.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rules_engine.store._schema import MONEY, UtcDateTime

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "rule_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("identity", sa.String(128), nullable=False, index=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("identity", "version"),
    )
    op.create_table(
        "rule_states",
        sa.Column("identity", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("firings", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "firings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("identity", sa.String(128), nullable=False, index=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("client_oid", sa.String(40), nullable=True, unique=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("intent", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("identity", "number"),
    )
    op.create_table(
        "orders",
        sa.Column("client_oid", sa.String(40), primary_key=True),
        sa.Column("firing_id", sa.Integer(), sa.ForeignKey("firings.id"), nullable=True),
        sa.Column("exchange_id", sa.String(64), nullable=True, index=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("size", MONEY, nullable=True),
        sa.Column("funds", MONEY, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filled_size", MONEY, nullable=False),
        sa.Column("filled_value", MONEY, nullable=False),
        sa.Column("family", sa.String(8), nullable=False),
        sa.Column("deadline", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "fills",
        sa.Column("trade_id", sa.String(64), primary_key=True),
        sa.Column(
            "client_oid",
            sa.String(40),
            sa.ForeignKey("orders.client_oid"),
            nullable=False,
            index=True,
        ),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("size", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=True),
        sa.Column("fee_currency", sa.String(16), nullable=True),
        sa.Column("time", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", UtcDateTime(), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("identity", sa.String(128), nullable=True, index=True),
        sa.Column("client_oid", sa.String(40), nullable=True, index=True),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_table(
        "lease",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("heartbeat", UtcDateTime(), nullable=False),
        sa.Column("alive", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "lease",
        "events",
        "fills",
        "orders",
        "firings",
        "rule_states",
        "rule_versions",
        "meta",
    ):
        op.drop_table(table)
