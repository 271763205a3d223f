"""The `--state` journal: every acknowledged change is on disk before the reply that confirms it.

Beside the state file `FILE` lives `FILE.journal`, one JSON line per engine operation that
touched the account (an order accepted, cancelled, reduced or altered; a fill; a stop order
placed, triggered or cancelled; the balance and hold changes they made). A line carries the full
row of every order it touched, the fills it made, the new totals and holds of the currencies it
moved and the id counters, so replaying it is an upsert: replaying a line twice changes nothing.

Group commit: `append` only buffers the line; one flusher writes whatever has accumulated and
fsyncs it in a worker thread, then releases, in order, every HTTP reply (`settled`) and every
WebSocket push (`after`) that waited for it. No reply or push that confirms a change leaves
before the fsync of its line; many concurrent orders share one fsync.

`compact` writes the whole state as the snapshot (with the number of the last line it includes)
and empties the journal; a crash between the two is harmless, since lines the snapshot already
holds are skipped by number on replay. A torn last line (the process died mid-write, so it was
never acknowledged) is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Journal", "fsync_dir", "journal_path", "read_journal"]


def journal_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".journal")


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's records in order; a torn last line is dropped, any other bad line is an
    error naming the file and the line."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    records: list[dict[str, Any]] = []
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    for number, line in enumerate(lines[: last + 1], start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if number == last + 1:
                break  # torn by a crash mid-write: never fsync'd, so never acknowledged
            raise ValueError(f"{path}:{number}: not a journal line; move the journal away "
                             "to start from the state file alone") from None
        if not isinstance(record, dict) or not isinstance(record.get("n"), int):
            raise ValueError(f"{path}:{number}: not a journal record; move the journal away "
                             "to start from the state file alone")
        records.append(record)
    return records


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse a directory's fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Journal:
    """Append-only, fsync'd before any confirmation; see the module's notes."""

    def __init__(self, path: Path, last_n: int) -> None:
        self.path = path
        self.appended = last_n  # number of the last line handed to `append`
        self.durable = last_n  # number of the last line known to be on disk
        self.bytes = path.stat().st_size if path.exists() else 0
        self.fsyncs = 0
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for the sandbox's life
        fsync_dir(path.parent)
        self._buffer: list[bytes] = []
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._pushes: deque[tuple[int, Callable[[], None]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._failure: OSError | None = None

    # ---- writing ------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> int:
        self.appended += 1
        record["n"] = self.appended
        self._buffer.append(orjson.dumps(record) + b"\n")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._flush_sync()  # no loop (start-up, a plain script): write it now
            return self.appended
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flusher())
        return self.appended

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.fsyncs += 1

    def _flush_sync(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._write(data)
            self.bytes += len(data)
        self._release(self.appended)

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _flusher(self) -> None:
        while self._buffer:
            async with self._guard():
                if not self._buffer:
                    break
                data = b"".join(self._buffer)
                self._buffer.clear()
                upto = self.appended
                try:
                    await asyncio.to_thread(self._write, data)
                except OSError as exc:
                    self._fail(exc)
                    return
                self.bytes += len(data)
                self._release(upto)

    def _fail(self, exc: OSError) -> None:
        """The disk refused: nothing pending is confirmed (the replies become errors)."""
        self._failure = exc
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(OSError(f"journal {self.path}: {exc}"))
        self._pushes.clear()

    def _release(self, upto: int) -> None:
        self.durable = max(self.durable, upto)
        while self._pushes and self._pushes[0][0] <= self.durable:
            self._pushes.popleft()[1]()
        while self._waiters and self._waiters[0][0] <= self.durable:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # ---- waiting ------------------------------------------------------------------------

    async def settled(self) -> None:
        """Return once every line appended so far is on disk (raises if the disk refused)."""
        if self._failure is not None and self.durable < self.appended:
            raise OSError(f"journal {self.path}: {self._failure}")
        if self.durable >= self.appended:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.appended, waiter))
        await waiter

    def after(self, push: Callable[[], None]) -> None:
        """Run `push` (a WebSocket fan-out) once everything appended so far is on disk, in the
        order the pushes were asked for."""
        if self.durable >= self.appended and not self._pushes:
            push()
        else:
            self._pushes.append((self.appended, push))

    # ---- compaction ---------------------------------------------------------------------

    async def compact(self, write_snapshot: Callable[[int], None]) -> None:
        """Write the snapshot (given the last line number it includes), then empty the
        journal. Waits for a write under way; nothing else runs meanwhile."""
        async with self._guard():
            self.compact_now(write_snapshot)

    def compact_now(self, write_snapshot: Callable[[int], None]) -> None:
        """`compact` for callers with no loop running, or holding no write under way."""
        write_snapshot(self.appended)
        self._buffer.clear()
        self._file.truncate(0)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.bytes = 0
        self._failure = None
        self._release(self.appended)

    def close(self) -> None:
        self._file.close()
