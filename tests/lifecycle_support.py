"""Helpers for the order-lifecycle fault tests (`tests/test_order_lifecycle_faults.py`, issue
12): a sandbox in its own process that can be killed and restarted on the same port from a
chosen `--state` file, watchers as `rules-engine run` processes, the control commands as
processes, and the sandbox's own record of the orders of one clientOid prefix. `fault_run`
is the set-up every such test shares: the sandbox started, the watcher config and rules files
written, watchers spawned, and everything stopped however the test ends.

It builds on `crash_support`: the sandbox's config (a second key, so that the test's reads
never eat the watcher's rate limit), its signed reads, and the watcher's stderr reader.
Everything is real: processes, loopback sockets, SQLite on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from crash_support import SANDBOX_CONFIG, SYMBOLS, Incarnation, SandboxProcess, _clean_env
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from rules_engine.store._schema import Lease

__all__ = [
    "CliResult",
    "FaultRun",
    "FaultSandbox",
    "WatcherRun",
    "cli",
    "fault_run",
    "free_port",
    "lease_owner",
    "resting_rule",
    "until",
    "watcher_toml",
]

ROOT = Path(__file__).resolve().parent.parent


def lease_owner(db: str) -> str | None:
    """The store's lease owner (`host:pid:...`), read from the store itself."""
    engine = create_engine(db)
    try:
        with Session(engine) as session:
            lease = session.get(Lease, 1)
            return None if lease is None else str(lease.owner)
    finally:
        engine.dispose()


def free_port() -> int:
    """A loopback port free right now (the restarted sandbox must come back on the same one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def watcher_toml(**values: Any) -> str:
    """A watcher config with short leases and windows; keyword arguments add or override keys
    (`risk={"max_open_orders": 4}` becomes a `[risk]` table)."""
    base: dict[str, Any] = {
        "order_window_ms": 1000, "request_timeout_s": 2.0, "resolve_interval_s": 0.5,
        "poll_interval_s": 1.0, "heartbeat_s": 0.5, "lease_stale_s": 3.0,
        "reconcile_interval_s": 2.0, "log_format": "json", "view": "off",
        "start_patience_s": 20.0,
    }
    base.update(values)
    lines, tables = [], []
    for key, value in base.items():
        if isinstance(value, dict):
            tables.append(f"[{key}]")
            tables.extend(f"{k} = {_toml(v)}" for k, v in value.items())
        else:
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines + tables) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def resting_rule(name: str, symbol: str, size: str, *, when: str = "bid > 1",
                 below: str = "10%", extra: str = "") -> str:
    """A limit buy far below the market (it rests on the book until cancelled)."""
    lines = [f"rule {name} on {symbol}:", f"    when {when}",
             f"    place limit buy {size} at bid - {below}"]
    lines.extend(f"    {line}" for line in extra.splitlines() if line.strip())
    return "\n".join(lines) + "\n"


async def until(predicate: Callable[[], Any], timeout: float, step: float = 0.25) -> bool:
    """Poll an async or sync `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)


class FaultSandbox(SandboxProcess):
    """`rules-engine sandbox` in its own process, on a port of its own choosing or a fixed one,
    with an optional `--state` file; it can be killed (SIGKILL) and started again."""

    def __init__(self, workdir: Path, seed: int, *, port: int = 0, state: Path | None = None,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__(workdir, seed, config)
        self.port = port
        self.state = state
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        config = self.workdir / "sandbox.json"
        config.write_text(json.dumps(self.config or SANDBOX_CONFIG, indent=1), encoding="utf-8")
        out = self.workdir / f"sandbox-{self.starts}.stdout"
        argv = [sys.executable, "-m", "rules_engine", "sandbox", "--port", str(self.port),
                "--feed", "synthetic", "--seed", str(self.seed), "--config", str(config)]
        if self.state is not None:
            argv += ["--state", str(self.state)]
        with out.open("wb") as stdout, \
                (self.workdir / f"sandbox-{self.starts}.stderr").open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdout=stdout, stderr=stderr, stdin=asyncio.subprocess.DEVNULL,
                env=_clean_env())
        self.url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = out.read_text(encoding="utf-8")
            if "\n" in text:
                self.url = json.loads(text.split("\n", 1)[0])["rest_url"]
                break
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        if not self.url:
            err = (self.workdir / f"sandbox-{self.starts}.stderr").read_text("utf-8")[-2000:]
            raise RuntimeError(f"the sandbox did not start: {err}")
        self.port = int(self.url.rsplit(":", 1)[1])
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def kill(self) -> None:
        """SIGKILL: the process loses whatever it had not written to its state file."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def faults(self, **changes: Any) -> None:
        await self.admin("POST", "faults", changes)

    async def orders_of(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every order of the account whose clientOid starts with `prefix`, active or done, by
        clientOid (the sandbox's own record, read over its signed REST API)."""
        record = await self.record()
        return {str(o["clientOid"]): o for o in record.orders.values()
                if str(o.get("clientOid") or "").startswith(prefix)}

    async def open_oids(self, prefix: str) -> set[str]:
        """The clientOids of `prefix` active on the sandbox (its active-orders endpoint)."""
        found: set[str] = set()
        for symbol in SYMBOLS:
            for item in await self.signed("/api/v1/hf/orders/active", [("symbol", symbol)]) or []:
                oid = str(item.get("clientOid") or "")
                if oid.startswith(prefix):
                    found.add(oid)
        return found


@dataclass
class WatcherRun:
    """A `rules-engine run` process and its stderr (every line kept in `log`)."""

    inc: Incarnation
    log: Path
    started_wall: float

    @classmethod
    async def spawn(cls, workdir: Path, name: str, rules: list[Path], *, url: str, db: str,
                    config: Path) -> WatcherRun:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rules_engine", "run", *map(str, rules),
            "--exchange-url", url, "--db", db, "--config", str(config),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=_clean_env(), limit=1 << 22, cwd=ROOT,
        )
        log = workdir / f"{name}.log"
        return cls(Incarnation(proc, log), log, time.time())

    @property
    def pid(self) -> int:
        return self.inc.proc.pid

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def count(self, kind: str) -> int:
        return self.inc.counts[kind]

    def text(self) -> str:
        if not self.inc.log.closed:
            self.inc.log.flush()  # the reader writes every line it reads, buffered
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                    if kind is None or data.get("event") == kind:
                        out.append(data)
        return out

    async def wait_for(self, kind: str, timeout: float) -> bool:
        return await self.inc.wait_for(kind, timeout)

    async def wait_count(self, kind: str, count: int, timeout: float) -> bool:
        return await until(lambda: self.inc.counts[kind] >= count or self.inc.eof.is_set(),
                           timeout, 0.05) and self.inc.counts[kind] >= count

    async def exit(self, timeout: float) -> int | None:
        """The exit status once the process ends on its own, or None after `timeout`."""
        try:
            return await asyncio.wait_for(self.inc.finish(), timeout)
        except TimeoutError:
            return None

    async def stop(self) -> int:
        """SIGTERM (SIGCONT first, in case it was stopped), then SIGKILL after 20 s."""
        if self.inc.proc.returncode is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
        code = await self.exit(20)
        if code is None:
            self.inc.kill()
            code = await self.inc.finish()
        return code

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"


async def cli(*argv: str, timeout: float = 60) -> CliResult:
    """`rules-engine ARGV` as a process; its exit status and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rules_engine", *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_clean_env(),
        cwd=ROOT)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return CliResult(-9, out.decode(), err.decode() + f"\n(killed after {timeout} s)")
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


@dataclass
class FaultRun:
    """One fault test's sandbox process and watchers, all files in `tmp`: the store `db`, the
    watcher config `config` and the rules files (`where` names the folder for failure
    messages)."""

    tmp: Path
    sandbox: FaultSandbox
    db: str
    config: Path
    watchers: list[WatcherRun] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"files in {self.tmp}"

    def configure(self, **values: Any) -> Path:
        """Write the watchers' config (`watcher_toml(**values)`)."""
        self.config.write_text(watcher_toml(**values), encoding="utf-8")
        return self.config

    def rules_file(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return path

    async def watch(self, name: str, rules: list[Path]) -> WatcherRun:
        """`rules-engine run RULES` on this run's sandbox, store and config; stopped with
        the run."""
        watcher = await WatcherRun.spawn(self.tmp, name, rules, url=self.sandbox.url,
                                         db=self.db, config=self.config)
        self.watchers.append(watcher)
        return watcher


@contextlib.asynccontextmanager
async def fault_run(tmp: Path, seed: int, *, db: str | None = None, port: int = 0,
                    state: Path | None = None) -> AsyncIterator[FaultRun]:
    """A started `FaultSandbox` (seed, port and `--state` file as given) and a store
    (`tmp/store.sqlite` unless `db` names another); on the way out, whatever happened, every
    watcher spawned with `FaultRun.watch` is stopped (in the order spawned), then the sandbox."""
    sandbox = FaultSandbox(tmp, seed, port=port, state=state)
    await sandbox.start()
    run = FaultRun(tmp, sandbox, db or f"sqlite:///{tmp / 'store.sqlite'}", tmp / "watcher.toml")
    try:
        yield run
    finally:
        for watcher in run.watchers:
            await watcher.stop()
        await sandbox.stop()
