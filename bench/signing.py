"""Gateways that sign events as the real one does, for the centre's ingest benchmarks.

The centre benchmarks need many enrolled gateways and tens of thousands of pre-signed
events, made before the clock starts so the figures are the centre's cost alone. The
events are built and signed with the same wire code the gateway uses (``sign_event``),
and a batch body is laid out as the uplink sends it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from response_center import admin
from trygg.wire.clock import format_ts, system_clock
from trygg.wire.envelope import DEFAULT_PRIORITY, DeviceRef, Event, SignedEvent, sign_event
from trygg.wire.ids import uuid7
from trygg.wire.jws import b64url_encode, key_id, public_key_bytes
from trygg.wire.messages import EnrolmentAnswer, EnrolmentRequest

BLOOD_PRESSURE: dict[str, Any] = {
    "systolic": {"m": 120, "e": 0},
    "diastolic": {"m": 80, "e": 0},
    "pulse": {"m": 64, "e": 0},
}
"""A typical measurement payload (mantissa/exponent pairs, as from IEEE 11073 SFLOAT)."""

DEVICE = DeviceRef(id="living/bp-cuff", profile="omron.bp", room="living")


@dataclass
class SigningGateway:
    """An Ed25519 gateway key with its own seq counter; events signed like the outbox's."""

    gateway_id: str = "gw-unenrolled"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    boot_id: str = "bench-boot"
    seq: int = 0

    @property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    @property
    def public_key(self) -> str:
        return b64url_encode(public_key_bytes(self.key.public_key()))

    def enrolment_request(self, code: str) -> EnrolmentRequest:
        return EnrolmentRequest(code=code, public_key=self.public_key, kid=self.kid)

    def event(
        self,
        type_: str,
        now: datetime,
        *,
        data: dict[str, Any] | None = None,
        vkp_alert_code: str | None = None,
    ) -> SignedEvent:
        klass = type_.split(".", 1)[0]
        self.seq += 1
        stamp = format_ts(now)
        event = Event.model_validate(
            {
                "event_id": str(uuid7(int(now.timestamp() * 1000))),
                "gateway_id": self.gateway_id,
                "boot_id": self.boot_id,
                "seq": self.seq,
                "occurred_at": stamp,
                "recorded_at": stamp,
                "class": klass,
                "type": type_,
                "priority": DEFAULT_PRIORITY[klass],
                "device": DEVICE,
                "data": BLOOD_PRESSURE if data is None else data,
                "vkp_alert_code": vkp_alert_code,
            }
        )
        return sign_event(event, self.key, self.kid)

    def measurements(self, count: int, now: datetime) -> list[SignedEvent]:
        return [self.event("measurement.blood_pressure", now) for _ in range(count)]


def batch_body(signed: Sequence[SignedEvent]) -> bytes:
    """``{"events":[{"event":<signed bytes>,"sig":...}]}``, the uplink's layout."""
    parts = [b'{"event":' + s.body + b',"sig":' + json.dumps(s.sig).encode() + b"}" for s in signed]
    return b'{"events":[' + b",".join(parts) + b"]}"


def create_bench_home(engine: Engine, municipality: str, home: str) -> None:
    """A municipality and a home the benchmark gateways are enrolled into."""
    with engine.begin() as conn:
        admin.create_municipality(conn, municipality, f"Bench {municipality}")
        admin.create_home(conn, municipality, home, "Benkveien 1")


def issue_codes(engine: Engine, municipality: str, home: str, count: int) -> list[str]:
    with engine.begin() as conn:
        return [
            admin.create_enrolment_code(
                conn, municipality, home, timedelta(hours=1), "bench", system_clock
            )
            for _ in range(count)
        ]


def enrol_over_https(
    center_url: str, ca_file: str, codes: Sequence[str]
) -> list[tuple[SigningGateway, EnrolmentAnswer]]:
    """Enrol one new gateway per code through ``POST /v1/enrol``, as an installer would."""
    enrolled: list[tuple[SigningGateway, EnrolmentAnswer]] = []
    verify = ssl.create_default_context(cafile=ca_file)
    with httpx.Client(base_url=center_url, verify=verify, timeout=30.0) as client:
        for code in codes:
            gateway = SigningGateway()
            answer = client.post(
                "/v1/enrol", json=gateway.enrolment_request(code).model_dump(exclude_none=True)
            )
            if answer.status_code != 201:
                raise RuntimeError(f"enrolment refused: HTTP {answer.status_code} {answer.text}")
            parsed = EnrolmentAnswer.model_validate(answer.json())
            gateway.gateway_id = parsed.gateway_id
            enrolled.append((gateway, parsed))
    return enrolled
