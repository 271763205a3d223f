"""A person's controls: the kill switch (halt, resume), `resolve` and `unblock`. Each request
is a row in `meta`, so it reaches a running watcher (which polls them) and holds across
restarts; each is answered in the store too."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rules_engine.store._core import StoreBase
from rules_engine.store._schema import Event, Meta

__all__ = ["Controls"]


class Controls(StoreBase):
    """A person's requests and their answers (`Store` is made of these parts)."""

    def _meta_get(self, key: str) -> str | None:
        with self.session() as session:
            row = session.get(Meta, key)
            return None if row is None else row.value

    def _meta_put(self, session: Session, key: str, value: str | None) -> None:
        row = session.get(Meta, key)
        if value is None:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(Meta(key=key, value=value))
        else:
            row.value = value

    def request_halt(self, everything: bool, now: datetime, by: str) -> str:
        """The kill switch: held until `resume`. Returns the request's id, which the watcher
        writes back as `halt_ack` once it has stopped firing and cancelled what it must."""
        request = uuid.uuid4().hex
        value = json.dumps({"all": everything, "at": now.isoformat(), "request": request,
                            "by": by})
        with self.session() as session, session.begin():
            self._meta_put(session, "halt", value)
            session.add(Event(at=now, kind="halt.requested", identity=None, client_oid=None,
                              payload={"all": everything, "request": request, "by": by}))
        return request

    def resume(self, now: datetime, by: str) -> bool:
        """Lift the kill switch; False when it was not on."""
        with self.session() as session, session.begin():
            if session.get(Meta, "halt") is None:
                return False
            self._meta_put(session, "halt", None)
            self._meta_put(session, "halt_ack", None)
            self._meta_put(session, "halt_progress", None)
            session.add(Event(at=now, kind="halt.lifted", identity=None, client_oid=None,
                              payload={"by": by}))
        return True

    def halt(self) -> dict[str, Any] | None:
        value = self._meta_get("halt")
        return None if value is None else dict(json.loads(value))

    def halt_acknowledged(self) -> str | None:
        return self._meta_get("halt_ack")

    def halt_progress(self) -> dict[str, Any] | None:
        """The watcher's last word on the halt: the request, the cancels asked, confirmed
        (`cancelled`) and still `open` on the exchange."""
        value = self._meta_get("halt_progress")
        return None if value is None else dict(json.loads(value))

    def acknowledge_halt(self, request: str, now: datetime, payload: dict[str, Any]) -> None:
        """The watcher took the halt `request`; `payload` says what it asked and what is
        still open (written again each time that shrinks: `halt_progress`)."""
        with self.session() as session, session.begin():
            self._meta_put(session, "halt_ack", request)
            self._meta_put(session, "halt_progress", json.dumps({"request": request,
                                                                 **payload}))
            session.add(Event(at=now, kind="halt.acknowledged", identity=None,
                              client_oid=None, payload={"request": request, **payload}))

    def request_resolution(self, oid: str, placed: bool, now: datetime, by: str) -> None:
        with self.session() as session, session.begin():
            self._meta_put(session, f"resolve:{oid}", "placed" if placed else "not-placed")
            session.add(Event(at=now, kind="resolve.requested", identity=None, client_oid=oid,
                              payload={"placed": placed, "by": by}))

    def resolutions(self) -> dict[str, bool]:
        """Pending requests of `rules-engine resolve`: clientOid -> placed."""
        with self.session() as session:
            rows = session.scalars(select(Meta).where(Meta.key.startswith("resolve:")))
            return {row.key[len("resolve:"):]: row.value == "placed" for row in rows}

    def resolution_done(self, oid: str) -> None:
        with self.session() as session, session.begin():
            self._meta_put(session, f"resolve:{oid}", None)

    @staticmethod
    def _unblock_key(identity: str) -> str:
        # An identity may be longer than a key (128 against 64): the key holds its hash.
        return "unblock:" + hashlib.sha256(identity.encode()).hexdigest()[:40]

    def request_unblock(self, identity: str, now: datetime, by: str) -> None:
        """`rules-engine unblock`: held until a watcher takes it (`unblock_done`)."""
        with self.session() as session, session.begin():
            self._meta_put(session, self._unblock_key(identity),
                           json.dumps({"rule": identity, "by": by}))
            session.add(Event(at=now, kind="unblock.requested", identity=identity,
                              client_oid=None, payload={"by": by}))

    def unblocks(self) -> list[str]:
        """The rules `rules-engine unblock` asked for and no watcher has taken yet."""
        with self.session() as session:
            rows = session.scalars(select(Meta.value).where(Meta.key.startswith("unblock:")))
            return sorted(str(json.loads(value)["rule"]) for value in rows)

    def unblock_done(self, identity: str) -> None:
        with self.session() as session, session.begin():
            self._meta_put(session, self._unblock_key(identity), None)
