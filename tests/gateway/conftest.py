"""Fixtures for the gateway's outbox, identity, uplink and status tests.

``centre`` is a small but real response centre: FastAPI under uvicorn with TLS on a free
port, in a thread of its own. It verifies events with ``verify_event`` and answers receipts
signed with its key, and can be told to misbehave (wrong receipt key, rejections, errors).
The real centre lives in ``response_center/``; this one exists so the gateway's side can be
tested against HTTP and TLS as they are, while the real one is written.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.config import OutboxLimits
from gateway.outbox import EventDraft, Migration, Outbox
from trygg.pki import ServerCertificate
from trygg.wire.canonical import canonical_json, parse_json_object
from trygg.wire.clock import format_ts
from trygg.wire.envelope import DeviceRef, Event, EventClass, verify_event
from trygg.wire.jws import (
    JwsError,
    b64url_encode,
    key_id,
    public_key_bytes,
    read_header,
    verify_detached,
)
from trygg.wire.messages import EnrolmentRequest, Heartbeat
from trygg.wire.receipt import Receipt, sign_receipts

START = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """An injected clock that moves only when the test says so."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gateway_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def draft(
    event_class: EventClass = "measurement",
    type: str | None = None,
    *,
    priority: int | None = None,
    data: dict[str, Any] | None = None,
    at: datetime = START,
) -> EventDraft:
    """A valid draft of the given class; tests vary only what they are about."""
    default_type = {
        "alarm": "alarm.button",
        "technical": "technical.battery_low",
        "measurement": "measurement.temperature",
        "activity": "activity.door_opened",
        "heartbeat": "heartbeat.beat",
    }[event_class]
    return EventDraft(
        event_class=event_class,
        type=type or default_type,
        priority=priority,
        occurred_at=at,
        device=DeviceRef(id="dev-1", profile="test.profile", room="hall"),
        data={"value": "21.5"} if data is None else data,
        vkp_alert_code="3" if event_class == "alarm" else None,
    )


OpenOutbox = Callable[..., Awaitable[Outbox]]


@pytest.fixture
async def open_outbox(
    tmp_path: Path, gateway_key: Ed25519PrivateKey, clock: FakeClock
) -> AsyncIterator[OpenOutbox]:
    """Open an outbox on a real SQLite file in tmp_path; all are closed at teardown."""
    opened: list[Outbox] = []

    async def opener(
        *,
        limits: OutboxLimits | None = None,
        migrations: tuple[Migration, ...] = (),
        path: Path | None = None,
        report_interval_s: float = 300.0,
        clock_: Callable[[], datetime] | None = None,
    ) -> Outbox:
        outbox = await Outbox.open(
            path or tmp_path / "gateway.sqlite",
            key=gateway_key,
            gateway_id="gw-test",
            limits=limits,
            clock=clock_ or clock,
            migrations=migrations,
            eviction_report_interval_s=report_interval_s,
        )
        opened.append(outbox)
        return outbox

    yield opener
    for outbox in opened:
        await outbox.close()


# --- the test centre ---------------------------------------------------------------------


@dataclass
class EnrolledGateway:
    gateway_id: str
    public_key: Ed25519PublicKey


@dataclass
class LocalCentre:
    """The test centre's state and behaviour switches; read by tests, served by uvicorn."""

    url: str = ""
    ca_file: Path = Path()
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    wrong_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    codes: dict[str, str] = field(default_factory=dict)
    """code → "ok" or the refusal reason to answer."""
    gateways: dict[str, EnrolledGateway] = field(default_factory=dict)
    mode: str = "ok"
    """ok | wrong_key | error_500 | unknown_gateway | revoked"""
    reject_types: set[str] = field(default_factory=set)
    malformed_types: set[str] = field(default_factory=set)
    heartbeat_interval_s: int = 60
    stored: dict[str, Receipt] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    requests: int = 0
    heartbeats: list[Heartbeat] = field(default_factory=list)
    heartbeat_fields: frozenset[str] | None = None
    """Set: act as an older centre that refuses heartbeats with any other member (400)."""

    @property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    def enrol_directly(self, key: Ed25519PrivateKey, gateway_id: str = "gw-test") -> None:
        """Register a gateway key without the enrolment round trip."""
        self.gateways[key_id(key.public_key())] = EnrolledGateway(gateway_id, key.public_key())


def _refusal(status: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"reason": reason, "message": message}}, status_code=status)


def build_centre_app(centre: LocalCentre, started: threading.Event) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started.set()
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/enrol")
    async def enrol(request: Request) -> JSONResponse:
        body = EnrolmentRequest.model_validate(parse_json_object(await request.body()))
        outcome = centre.codes.get(body.code)
        if outcome is None:
            return _refusal(403, "code_unknown", "This enrolment code is not known.")
        if outcome != "ok":
            return _refusal(403, outcome, f"The enrolment code cannot be used: {outcome}.")
        centre.codes[body.code] = "code_used"
        gateway_id = f"gw-{len(centre.gateways) + 1:04d}"
        from trygg.wire.jws import public_key_from_b64url

        centre.gateways[body.kid] = EnrolledGateway(
            gateway_id, public_key_from_b64url(body.public_key)
        )
        return JSONResponse(
            {
                "gateway_id": gateway_id,
                "municipality": "0301",
                "home": "home-7",
                "center_public_key": b64url_encode(public_key_bytes(centre.key.public_key())),
                "center_kid": centre.kid,
                "heartbeat_interval_s": centre.heartbeat_interval_s,
            },
            status_code=201,
        )

    def gateway_for(sig: Any) -> EnrolledGateway | JSONResponse:
        try:
            kid = read_header(sig)["kid"]
        except JwsError:
            return _refusal(400, "malformed", "bad signature header")
        if centre.mode == "unknown_gateway" or kid not in centre.gateways:
            return _refusal(401, "unknown_gateway", "This gateway is not enrolled.")
        if centre.mode == "revoked":
            return _refusal(403, "revoked", "This gateway has been revoked.")
        return centre.gateways[kid]

    @app.post("/v1/events")
    async def events(request: Request) -> JSONResponse:
        centre.requests += 1
        if centre.mode == "error_500":
            return _refusal(500, "internal", "The centre is having a bad day.")
        body = parse_json_object(await request.body())
        items = body["events"]
        gateway = gateway_for(items[0]["sig"])
        if isinstance(gateway, JSONResponse):
            return gateway
        if any(item["event"].get("type") in centre.malformed_types for item in items):
            return _refusal(400, "malformed", "The batch is malformed.")
        key = centre.wrong_key if centre.mode == "wrong_key" else centre.key
        kid = key_id(key.public_key())
        receipts = []
        centre.batches.append([str(item["event"].get("event_id")) for item in items])
        for item in items:
            raw = item["event"]
            try:
                signed = verify_event(raw, item["sig"], gateway.public_key)
            except (ValueError, JwsError):
                receipt = Receipt(
                    gateway_id=gateway.gateway_id,
                    event_id=str(raw.get("event_id")),
                    status="rejected",
                    reason="bad_signature",
                )
            else:
                event = signed.event
                if event.event_id in centre.stored:
                    first = centre.stored[event.event_id]
                    receipt = first.model_copy(update={"status": "duplicate"})
                elif event.type in centre.reject_types:
                    receipt = Receipt(
                        gateway_id=gateway.gateway_id,
                        event_id=event.event_id,
                        seq=event.seq,
                        status="rejected",
                        reason="test_rejected",
                    )
                else:
                    receipt = Receipt(
                        gateway_id=gateway.gateway_id,
                        event_id=event.event_id,
                        seq=event.seq,
                        status="accepted",
                        stored_at=format_ts(datetime.now(UTC)),
                    )
                    centre.stored[event.event_id] = receipt
                    centre.events.append(event)
            receipts.append(receipt)
        return JSONResponse(sign_receipts(receipts, key, kid))

    @app.post("/v1/heartbeat")
    async def heartbeat(request: Request) -> JSONResponse:
        body = parse_json_object(await request.body())
        gateway = gateway_for(body["sig"])
        if isinstance(gateway, JSONResponse):
            return gateway
        try:
            verify_detached(body["sig"], canonical_json(body["heartbeat"]), gateway.public_key)
        except JwsError:
            return _refusal(400, "bad_signature", "The heartbeat signature does not verify.")
        if centre.heartbeat_fields is not None and set(body["heartbeat"]) - centre.heartbeat_fields:
            return _refusal(400, "malformed", "Extra inputs are not permitted.")
        centre.heartbeats.append(Heartbeat.model_validate(body["heartbeat"]))
        return JSONResponse(
            {
                "heartbeat_interval_s": centre.heartbeat_interval_s,
                "server_time": format_ts(datetime.now(UTC)),
            }
        )

    return app


@pytest.fixture
def centre(local_tls: ServerCertificate) -> Iterator[LocalCentre]:
    """Start the test centre over HTTPS on a free port; stop it after the test."""
    state = LocalCentre(ca_file=local_tls.ca_file)
    started = threading.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    state.url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        build_centre_app(state, started),
        ssl_certfile=str(local_tls.cert_file),
        ssl_keyfile=str(local_tls.key_file),
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    # The socket is already listening, so a client that connects early waits in the backlog.
    assert started.wait(10), "test centre did not start"
    yield state
    server.should_exit = True
    thread.join(10)
    sock.close()
