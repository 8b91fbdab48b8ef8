"""Test helpers for the response centre: a settable clock, a signing gateway, API shortcuts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, func, select

from response_center.db.schema import alarms, events, security_events
from trygg.wire.clock import format_ts
from trygg.wire.envelope import DEFAULT_PRIORITY, DeviceRef, Event, SignedEvent, sign_event
from trygg.wire.ids import uuid7
from trygg.wire.jws import b64url_encode, key_id, public_key_bytes, public_key_from_b64url
from trygg.wire.receipt import Receipt, verify_receipts

START = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
"""Cheap argon2 parameters for test users; the verify cost follows the stored hash."""
PASSWORD = "correct horse battery"


@dataclass
class FakeClock:
    """A clock the test moves by hand; the app and the gateway read the same one."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class FakeGateway:
    """A real Ed25519 gateway key that builds and signs events as the gateway does."""

    clock: FakeClock
    gateway_id: str = ""
    center_public_key: str = ""
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    boot_id: str = "boot-1"
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    @property
    def public_key(self) -> str:
        return b64url_encode(public_key_bytes(self.key.public_key()))

    def event(
        self,
        type_: str = "measurement.blood_pressure",
        *,
        seq: int | None = None,
        priority: int | None = None,
        data: dict[str, Any] | None = None,
        device: DeviceRef | None = None,
        occurred_at: datetime | None = None,
        **overrides: Any,
    ) -> SignedEvent:
        cls = type_.split(".", 1)[0]
        now = self.clock()
        fields: dict[str, Any] = {
            "event_id": str(uuid7(int(now.timestamp() * 1000))),
            "gateway_id": self.gateway_id,
            "boot_id": self.boot_id,
            "seq": next(self.seq) if seq is None else seq,
            "occurred_at": format_ts(occurred_at or now),
            "recorded_at": format_ts(now),
            "class": cls,
            "type": type_,
            "priority": DEFAULT_PRIORITY[cls] if priority is None else priority,
            "device": device or DeviceRef(id="hall/button", profile="aqara.WXKG11LM", room="hall"),
            "data": {"battery": 97} if data is None else data,
        }
        fields.update(overrides)
        return sign_event(Event.model_validate(fields), self.key, self.kid)

    def alarm(self, **kwargs: Any) -> SignedEvent:
        return self.event("alarm.button", vkp_alert_code="3", data={"action": "single"}, **kwargs)

    def receipts(self, answer: httpx.Response) -> list[Receipt]:
        """Verify every receipt with the centre key received at enrolment."""
        assert answer.status_code == 200, answer.text
        key = public_key_from_b64url(self.center_public_key)
        return verify_receipts(answer.json(), key)


def batch(*signed: SignedEvent) -> dict[str, Any]:
    return {"events": [s.to_wire() for s in signed]}


async def send(
    client: httpx.AsyncClient, gateway: FakeGateway, *signed: SignedEvent
) -> list[Receipt]:
    return gateway.receipts(await client.post("/v1/events", json=batch(*signed)))


def reason(answer: httpx.Response) -> str:
    return str(answer.json()["detail"]["reason"])


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def stored_events(engine: Engine) -> list[tuple[str, int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.event_id, events.c.seq, events.c.body).order_by(events.c.id)
        )
        return [(r.event_id, r.seq, r.body) for r in rows]


def security_kinds(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(security_events.c.kind).order_by(security_events.c.id))
        return [r[0] for r in rows]


def alarm_count(engine: Engine) -> int:
    return count(engine, alarms)
