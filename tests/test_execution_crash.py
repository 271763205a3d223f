"""A slice's watcher killed between the slice's commit and its send, with real processes: a
sandbox (`rules-engine sandbox --state FILE`) and watchers (`rules-engine run`) on a SQLite
file, helpers from `lifecycle_support`.

The window is made exact, not hoped for: the sandbox holds every REST request (fault
`delay_ms`) when the TWAP's second slice falls due, so that slice's request never reaches its
order book; the watcher is killed (SIGKILL) the moment it reports the slice fired (its commit
is done), then the sandbox is killed with the request still held and started again from its
state file on the same port. The exchange never saw the slice; the store has it committed.
The restart proves it absent after its deadline (about 5 s) and sends it again within its
15 s interval, then the last slice.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from lifecycle_support import fault_run, until

from rules_engine.engine._slices import group_of
from rules_engine.store import Store, client_oid

RULES = ("rule slow on BTC-USDT:\n    when bid > 1\n"
         "    place twap buy 0.003 over 45s every 15s limit bid - 10%\n")


@pytest.mark.slow
async def test_a_slice_killed_between_its_commit_and_its_send_is_looked_up_and_sent_once(
    tmp_path: Path,
) -> None:
    async with fault_run(tmp_path, 31, state=tmp_path / "sandbox.state") as run:
        run.configure()
        rules = run.rules_file("twap.rules", RULES)
        first = await run.watch("first", [rules])
        assert await first.wait_count("acknowledged", 1, 60), first.tail()
        await run.sandbox.faults(delay_ms=300_000)  # slice 2's request will be held
        first.inc.trigger = lambda kind, data: kind == "fired" and data.get("slice") == 2
        assert await first.exit(40) is not None, first.tail()
        assert first.inc.kill_sent, f"not killed at slice 2: {run.where}"

        store = Store(run.db)
        engine = store.engine_id()
        group = group_of("slow", 1)
        oids = [client_oid(engine, group, k) for k in (1, 2, 3)]
        committed = {f.number: f for f in store.firings() if f.identity == group}
        store.close()
        assert sorted(committed) == [1, 2] and committed[2].client_oid == oids[1]
        assert committed[2].status not in ("acknowledged", "refused"), committed[2].status

        await run.sandbox.kill()  # the held request dies with it, never on the book
        await run.sandbox.start()  # same port, same state file, no faults
        seen = await run.sandbox.orders_of(oids[0][:8])
        assert oids[0] in seen and oids[1] not in seen, sorted(seen)

        second = await run.watch("second", [rules])

        def finished() -> bool:
            with_store = Store(run.db)
            try:
                slices = [f for f in with_store.firings() if f.identity == group]
                return bool(with_store.events("slices.ended")) and len(slices) == 3 and all(
                    f.status == "acknowledged" for f in slices)
            finally:
                with_store.close()

        assert await until(finished, 60, 0.5), f"{second.tail()}\n{run.where}"
        record = await run.sandbox.record()
        sent = Counter(str(o.get("clientOid")) for o in record.orders.values()
                       if str(o.get("clientOid")) in oids)
        assert sent == Counter(oids), sent  # each slice's clientOid once, none missing
        total = sum(Decimal(str(o["size"])) for o in record.orders.values()
                    if str(o.get("clientOid")) in oids)
        assert total == Decimal("0.003")
        store = Store(run.db)
        kinds = [e.kind for e in store.events() if e.client_oid == oids[1]]
        [resumed] = store.events("slices.resumed")
        store.close()
        assert resumed.payload["recorded"] == 2 and resumed.payload["of"] == 3
        assert kinds.index("firing.not_placed") < kinds.index("fired.again"), kinds
        assert await second.stop() == 0, second.tail()
