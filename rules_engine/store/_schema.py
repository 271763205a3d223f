"""The store's tables (SQLAlchemy 2, typed). Money is exact (`Numeric` with 38 digits, 18 after
the point, returned as `Decimal`), time is timezone-aware UTC on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "MONEY",
    "Base",
    "Event",
    "Fill",
    "Firing",
    "Lease",
    "Meta",
    "Money",
    "Order",
    "RuleState",
    "RuleVersion",
    "UtcDateTime",
]


class Money(TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC(38, 18) where the database has it; text on SQLite, whose
    NUMERIC is a float underneath and would turn 59000.1 into 59000.0999999999985."""

    impl = Numeric(38, 18, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"money must be a finite Decimal, not {value!r}")
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


MONEY = Money()


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; refuses naive ones; returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store keeps timezone-aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy's declared mapping
        datetime: UtcDateTime,
        Decimal: MONEY,
    }


class Meta(Base):
    """Facts about this store: `engine_id` (part of every clientOid), `venue_instance`."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RuleVersion(Base):
    __tablename__ = "rule_versions"
    __table_args__ = (UniqueConstraint("identity", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    canonical: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(Text)  # the rule as written in its file


class RuleState(Base):
    __tablename__ = "rule_states"
    identity: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    firings: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)  # the evaluator's state, serialised
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Firing(Base):
    """A decision to act, committed before anything is sent (intent first)."""

    __tablename__ = "firings"
    __table_args__ = (UniqueConstraint("identity", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity: Mapped[str] = mapped_column(String(128), index=True)
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    client_oid: Mapped[str | None] = mapped_column(String(40), unique=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    intent: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class Order(Base):
    __tablename__ = "orders"
    client_oid: Mapped[str] = mapped_column(String(40), primary_key=True)
    firing_id: Mapped[int | None] = mapped_column(ForeignKey("firings.id"))
    exchange_id: Mapped[str | None] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16))
    price: Mapped[Decimal | None]
    size: Mapped[Decimal | None]
    funds: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(16))
    filled_size: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    filled_value: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    family: Mapped[str] = mapped_column(String(8))
    deadline: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    # Why a cancel was asked and not yet confirmed (the order table's `cancel`), and when
    # its `cancel after` falls due: kept so a restart carries on with both.
    cancel: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    cancel_at: Mapped[datetime | None] = mapped_column(default=None)


class Fill(Base):
    """One fill of one order. Keyed by (trade id, order): a trade between two of the
    account's own orders is one trade id on both sides, and each side is a fill."""

    __tablename__ = "fills"
    trade_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_oid: Mapped[str] = mapped_column(
        ForeignKey("orders.client_oid"), primary_key=True, index=True
    )
    price: Mapped[Decimal]
    size: Mapped[Decimal]
    fee: Mapped[Decimal | None]
    fee_currency: Mapped[str | None] = mapped_column(String(16))
    time: Mapped[datetime]


class Event(Base):
    """Append-only: every transition of every rule, firing and order, and what the feed did."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    identity: Mapped[str | None] = mapped_column(String(128), index=True)
    client_oid: Mapped[str | None] = mapped_column(String(40), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class Lease(Base):
    """One row: the watcher that owns this store, and when it last said it is alive. `epoch`
    grows by one on every acquisition: a watcher's fence is (owner, epoch)."""

    __tablename__ = "lease"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    heartbeat: Mapped[datetime]
    alive: Mapped[bool] = mapped_column(Boolean, default=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
