"""Storage failure as a fail-stop: one `StorageFailed` line naming the cause and the fix.

`watch_failures(engine)` installs one SQLAlchemy `handle_error` listener, so every statement,
commit and connect of the store goes through the same classification; no Store method
handles it on its own. Only the database failing underneath is turned into `StorageFailed`
(disk or database full, a read-only file or file system, a lock held beyond the busy timeout,
an I/O error, a file moved or deleted, a lost or refused PostgreSQL connection, a server
shutting down); everything else (an IntegrityError the store expects, a bad statement) is left
as it is. The message never holds a password: a PostgreSQL URL is shown with it hidden.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext

__all__ = ["StorageFailed", "classify", "watch_failures"]

_AGAIN = "then start again; every order sent before is recovered"
_LOCKED = "the database stayed locked"


class StorageFailed(Exception):
    """The database failed underneath the store: stop at once, say why and what to do."""

    def __init__(self, cause: str, where: str, fix: str, *, recoverable: bool = True) -> None:
        self.cause, self.where, self.fix = cause, where, fix
        # Another process holds SQLite's write lock: nothing failed, and it may end (a
        # watcher frozen inside a commit resumes). A start that owns nothing yet waits.
        self.locked = cause.startswith(_LOCKED)
        tail = _AGAIN if recoverable else "then start again"
        super().__init__(f"the store failed: {cause} ({where}): {fix}, {tail}")


_MOVED = ("the database file was moved or deleted while in use",
          "put the file back where it was (or restore it)")
_FULL = ("the disk is full", "free space", True)
_READ_ONLY = ("the database file or its file system is read-only",
              "make it writable (the file's permissions, or remount the file system "
              "read-write)", True)
# Codes whose cause the file system tells better: SQLite cannot open a WAL database's
# shared-memory file on a read-only file system (CANTOPEN), and a write the kernel refused
# comes back as an I/O error.
_PROBED = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_READONLY")

# SQLite's result codes (Python 3.11's `sqlite_errorname`, extended codes included) by prefix:
# (prefix, cause, fix, whether the record is whole afterwards).
_SQLITE: tuple[tuple[str, str, str, bool], ...] = (
    ("SQLITE_FULL", *_FULL),
    ("SQLITE_READONLY_DBMOVED", *_MOVED, True),
    ("SQLITE_READONLY", *_READ_ONLY),
    ("SQLITE_BUSY", f"{_LOCKED} by another process beyond the 5 s busy timeout",
     "stop whatever holds it (a backup, an sqlite3 shell, a copy in progress)", True),
    ("SQLITE_LOCKED", f"{_LOCKED} beyond the 5 s busy timeout",
     "stop whatever holds it (a backup, an sqlite3 shell, a copy in progress)", True),
    ("SQLITE_IOERR", "the disk failed to read or write (an I/O error)",
     "check the disk, its file system (dmesg) and that the database file still exists", True),
    ("SQLITE_CANTOPEN", "the database file cannot be opened",
     "check that its folder exists and that this user may write to it", True),
    ("SQLITE_NOMEM", "the process ran out of memory", "free memory", True),
    ("SQLITE_CORRUPT", "the database file is damaged", "restore it from a backup", False),
    ("SQLITE_NOTADB", "the file is not an SQLite database",
     "check the --db path, or restore the file from a backup", False),
)

def _probe(path: str | None) -> tuple[str, str, bool] | None:
    """What the file system of the database says: read-only, or full."""
    if not path:
        return None
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return ("the database's folder is gone", "create it again or point --db at the "
                "database file", True)
    if stat.f_flag & os.ST_RDONLY:
        return _READ_ONLY
    if stat.f_bavail == 0:
        return _FULL
    return None


_PG_SERVER_DOWN = ("57P01", "57P02", "57P03")  # admin, crash shutdown; cannot connect now
_PG_REACH = "check that the PostgreSQL server runs and this host can reach it"


def _pg(error: BaseException, disconnect: bool) -> tuple[str, str, bool] | None:
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if state == "53100":
        return "the database server's disk is full", "free space on the server", True
    if state is not None and state.startswith("53"):
        return ("the database server ran out of resources (memory or connections)",
                "free them on the server", True)
    if state in _PG_SERVER_DOWN:
        return "the PostgreSQL server shut down or is restarting", _PG_REACH, True
    if state == "25006":
        return ("the database accepts no writes (a standby, or read-only transactions)",
                "point --db at the primary server", True)
    if (state is not None and state.startswith("08")) or disconnect:
        return "the connection to PostgreSQL was lost", _PG_REACH, True
    if state is None and type(error).__name__ == "OperationalError":
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no reason given"
        return f"PostgreSQL cannot be reached ({first[:160]})", _PG_REACH, True
    return None


def classify(error: BaseException, dialect: str, *, disconnect: bool = False,
             path: str | None = None) -> tuple[str, str, bool] | None:
    """(cause, fix, recoverable) when the DBAPI `error` is the database failing underneath;
    None for anything else (constraint violations, bad statements: those are bugs or
    expected outcomes, never a storage failure)."""
    if dialect == "sqlite":
        name = getattr(error, "sqlite_errorname", None)
        if not isinstance(name, str):
            return None
        if name.startswith(_PROBED) and not name.startswith("SQLITE_READONLY_DBMOVED"):
            found = _probe(path)
            if found is not None:
                return found
        for prefix, cause, fix, whole in _SQLITE:
            if name.startswith(prefix):
                return cause, fix, whole
        return None
    if dialect == "postgresql":
        return _pg(error, disconnect)
    return ("the database failed", "check the database server", True) if disconnect else None


def _where(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return url.database or "an in-memory database"
    text = url.render_as_string(hide_password=True)
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def _watch_file(engine: Engine, path: str, where: str) -> None:
    """SQLite in WAL mode keeps writing to a database file deleted or replaced under it
    (into a file nobody will ever open again): each checkout checks that the path still
    names the file this connection opened (one stat), else the store fails."""
    path = os.path.abspath(path)  # as opened: a later chdir changes nothing

    def opened(_dbapi: Any, record: Any) -> None:
        with contextlib.suppress(OSError):
            stat = os.stat(path)
            record.info["file"] = (stat.st_dev, stat.st_ino)

    def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise StorageFailed(_MOVED[0], where, _MOVED[1]) from None
        known = record.info.get("file")
        if known is not None and known != (stat.st_dev, stat.st_ino):
            raise StorageFailed(_MOVED[0], where, _MOVED[1])

    event.listen(engine, "connect", opened)
    event.listen(engine, "checkout", checkout)


def watch_failures(engine: Engine) -> None:
    """Turn every storage failure on `engine` into `StorageFailed` (see the module's text)."""
    where = _where(engine)
    password = engine.url.password
    path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not path.startswith("file:"):
        _watch_file(engine, path, where)

    def on_error(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return  # the pool replaces a dead connection it finds before handing it out
        error: Any = context.original_exception
        found = classify(error, context.dialect.name, disconnect=context.is_disconnect,
                         path=path)
        if found is None:
            return
        cause, fix, whole = found
        if password:
            cause = cause.replace(str(password), "***")
        raise StorageFailed(cause, where, fix, recoverable=whole) from None

    event.listen(engine, "handle_error", on_error)
