"""Storage failure is a fail-stop with one line (issue 12, item 5, the store's side): real
conditions on a small tmpfs mounted here (a full disk, a read-only file system), a real lock,
a database file deleted while open, and the real PostgreSQL's connections killed or refused."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from rules_engine.store import StorageFailed, Store
from rules_engine.store._failure import classify
from rules_engine.store._repo import StateRow

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)
PG_URL = os.environ.get("RULES_ENGINE_TEST_PG_URL")
AGAIN = "then start again; every order sent before is recovered"
FULL = "the disk is full ({}): free space, " + AGAIN
READ_ONLY = ("the database file or its file system is read-only ({}): make it writable (the "
             "file's permissions, or remount the file system read-write), " + AGAIN)


def _mount(folder: Path, options: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): "
                    f"{done.stderr.strip()[:200]}")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own, unmounted at the end."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    _mount(folder, "size=4m,mode=0755")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fire(store: Store, identity: str, pad: int = 0) -> None:
    order = {"exchange_id": None, "symbol": "BTC-USDT", "side": "buy", "order_type": "limit",
             "price": Decimal("59000"), "size": Decimal("0.001"), "funds": None,
             "status": "pending", "filled_size": Decimal(0), "filled_value": Decimal(0),
             "family": "hf", "deadline": NOW + timedelta(seconds=10)}
    store.fire(identity, 1, version=1, inputs={"pad": "x" * pad}, intent={"symbol": "BTC-USDT"},
               order=order, state=StateRow(identity, 1, "done", 1, {"status": "done"}, None),
               now=NOW)


def _owned(url: str) -> Store:
    store = Store(url)
    store.migrate()
    store.acquire_lease("watcher", NOW, TTL)
    return store


def _committed(url: str) -> tuple[list[str], int]:
    store = Store(url)
    try:
        return [f.identity for f in store.firings()], len(store.orders())
    finally:
        store.close()


def test_a_full_disk_stops_the_store_with_one_line_and_keeps_every_firing_before_it(
    tmpfs: Path,
) -> None:
    path = tmpfs / "db.sqlite"
    url = f"sqlite:///{path}"
    store = _owned(url)
    free = os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize
    filler = tmpfs / "filler"
    filler.write_bytes(b"\0" * (free - 300 * 1024))  # room for a few firings only
    fired: list[str] = []
    with pytest.raises(StorageFailed) as failed:
        for n in range(1000):
            _fire(store, f"rule-{n}", pad=8000)
            fired.append(f"rule-{n}")
    assert str(failed.value) == "the store failed: " + FULL.format(path)
    assert fired and failed.value.__traceback__ is not None
    with pytest.raises(StorageFailed, match="the disk is full"):  # and so is the next firing
        _fire(store, "after-the-failure", pad=8000)
    store.close()
    filler.unlink()  # space freed: the record is whole, and the store works again
    assert _committed(url) == (fired, len(fired))
    again = Store(url)
    try:
        again.acquire_lease("watcher-2", NOW + TTL, TTL)
        _fire(again, "after-the-failure")
        assert [f.identity for f in again.firings()] == [*fired, "after-the-failure"]
    finally:
        again.close()


def _read_only_store(tmpfs: Path) -> str:
    """A store with three firings, on a file system then remounted read-only."""
    url = f"sqlite:///{tmpfs / 'db.sqlite'}"
    store = _owned(url)
    for n in range(3):
        _fire(store, f"rule-{n}")
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    return url


def test_a_read_only_file_system_stops_the_store_with_one_line(tmpfs: Path) -> None:
    url = _read_only_store(tmpfs)
    expected = "the store failed: " + READ_ONLY.format(tmpfs / "db.sqlite")
    store = Store(url)
    try:
        with pytest.raises(StorageFailed) as failed:
            store.acquire_lease("watcher-2", NOW + TTL, TTL)
        assert str(failed.value) == expected
        with pytest.raises(StorageFailed, match="read-only"):
            store.firings()  # a WAL database cannot even be read there (no -shm)
    finally:
        store.close()
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    assert _committed(url) == (["rule-0", "rule-1", "rule-2"], 3)


def test_the_cli_says_it_in_one_line_and_exits_2(tmpfs: Path) -> None:
    url = _read_only_store(tmpfs)
    for command in (["status"], ["halt"]):
        done = subprocess.run([sys.executable, "-m", "rules_engine", *command, "--db", url],
                              capture_output=True, text=True, timeout=60, check=False)
        expected = (f"rules-engine {command[0]}: error: the store failed: "
                    + READ_ONLY.format(tmpfs / "db.sqlite") + "\n")
        assert (done.returncode, done.stderr) == (2, expected), done.stderr
        assert "Traceback" not in done.stdout + done.stderr


def test_a_lock_held_beyond_the_busy_timeout_stops_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = _owned(url)
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock, never released
        with pytest.raises(StorageFailed, match=r"^the store failed: the database stayed "
                           r"locked by another process beyond the 5 s busy timeout \("):
            _fire(store, "dip")
        holder.execute("ROLLBACK")
        _fire(store, "dip")  # the lock gone, the same store works
    finally:
        holder.close()
        store.close()
    assert _committed(url) == (["dip"], 1)


def test_a_database_file_deleted_under_the_store_stops_it(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = _owned(f"sqlite:///{path}")
    try:
        _fire(store, "dip")
        path.unlink()
        with pytest.raises(StorageFailed, match=r"^the store failed: the database file was "
                           r"moved or deleted while in use \("):
            _fire(store, "next")
    finally:
        store.close()


def test_what_is_not_a_storage_failure_stays_what_it_is(tmp_path: Path) -> None:
    """A duplicate (IntegrityError, which `record_fill` and `fire` expect) and a store that
    was never migrated (a missing table) are never reported as the storage failing."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    bare = Store(url)
    try:
        with pytest.raises(OperationalError, match="no such table"):
            bare.firings()
    finally:
        bare.close()
    store = _owned(url)
    try:
        store.record_intent("dip", 1, version=1, inputs={}, intent={"s": "x"}, now=NOW)
        with pytest.raises(IntegrityError):
            store.record_intent("dip", 1, version=1, inputs={}, intent={"s": "x"}, now=NOW)
    finally:
        store.close()


# ------------------------------------------------------------------ PostgreSQL

needs_pg = pytest.mark.skipif(not PG_URL, reason="RULES_ENGINE_TEST_PG_URL is not set: "
                              "PostgreSQL tests need a server")


@pytest.fixture
def pg_store() -> Iterator[tuple[Store, object]]:
    assert PG_URL is not None
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    store = Store(PG_URL, schema=schema)
    try:
        store.migrate()
        yield store, admin
    finally:
        store.close()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _backend(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(admin: object, pid: int) -> None:
    with admin.begin() as connection:  # type: ignore[attr-defined]
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"),
                                  {"pid": pid}).scalar_one()


@needs_pg
def test_a_postgresql_connection_killed_while_idle_is_replaced_before_use(
    pg_store: tuple[Store, object],
) -> None:
    """pool_pre_ping: a pooled connection killed by pg_terminate_backend (a server restart,
    an admin) is found dead at checkout and replaced before any statement: no failure."""
    store, admin = pg_store
    store.acquire_lease("watcher", NOW, TTL)
    _fire(store, "before")
    killed = _backend(store)
    _terminate(admin, killed)
    _fire(store, "after")
    assert _backend(store) != killed
    assert [f.identity for f in store.firings()] == ["before", "after"]


@needs_pg
def test_a_postgresql_connection_killed_inside_a_transaction_stops_the_store(
    pg_store: tuple[Store, object],
) -> None:
    store, admin = pg_store
    store.acquire_lease("watcher", NOW, TTL)
    _fire(store, "before")
    with pytest.raises(StorageFailed) as failed, store.session() as session, session.begin():
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        _terminate(admin, pid)
        session.execute(text("SELECT 1"))
    assert str(failed.value).startswith("the store failed: ")
    assert "PostgreSQL" in str(failed.value) and "***" not in str(failed.value)
    assert str(failed.value).endswith("check that the PostgreSQL server runs and this host "
                                      "can reach it, " + AGAIN)
    assert [f.identity for f in store.firings()] == ["before"]  # the pool recovered


@needs_pg
def test_a_refused_postgresql_connection_names_the_server_and_never_the_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = Store(f"postgresql+psycopg://rules:s3cret-pw@127.0.0.1:{port}/test")
    try:
        with pytest.raises(StorageFailed) as failed:
            store.migrate()
    finally:
        store.close()
    message = str(failed.value)
    assert "s3cret-pw" not in message and "\n" not in message
    assert message.startswith("the store failed: PostgreSQL cannot be reached (")
    assert f"(postgresql+psycopg://rules:***@127.0.0.1:{port}/test)" in message


def test_postgresql_server_conditions_are_told_apart() -> None:
    """The SQLSTATEs a server sends when it fails (psycopg's own exception classes)."""
    from psycopg import errors

    cases = {"53100": "the database server's disk is full",
             "57P01": "the PostgreSQL server shut down or is restarting",
             "25006": "the database accepts no writes",
             "08006": "the connection to PostgreSQL was lost"}
    for state, cause in cases.items():
        found = classify(errors.lookup(state)("x"), "postgresql")
        assert found is not None and found[0].startswith(cause), state
    assert classify(errors.lookup("23505")("duplicate"), "postgresql") is None  # unique
    assert classify(errors.lookup("42P01")("no table"), "postgresql") is None
