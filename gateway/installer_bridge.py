"""Talking to Zigbee2MQTT's bridge for the installer: requests, answers and its version.

Z2M answers ``bridge/request/<cmd>`` on ``bridge/response/<cmd>`` and echoes a
``transaction`` member, so each request here carries a fresh one and waits only for its own
answer. The parsing functions are pure; :class:`BridgeLink` is the I/O around one aiomqtt
client that the CLI (pairing, rename, remove) and the daemon (commands from the centre)
each open on the home's broker, which listens on loopback only.

``permit_join`` changed in Z2M 2.0 (Koenkk/zigbee2mqtt#24257, #28894): 2.x takes
``{"time": 0..254}`` and answers "Invalid payload" to the 1.x form ``{"value": bool}``, so a
1.x-style close would leave a 2.x network open. The form is chosen from ``bridge/info``'s
``version``; without it the current (2.x) form is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from drivers.mqtt.zigbee2mqtt import (
    BridgeDevice,
    Z2mParseError,
    parse_bridge_devices,
    parse_bridge_state,
    parse_state,
)
from firmware_profiles.schema import ReportingRequest
from gateway.config import BrokerConfig

log = logging.getLogger("trygg.gateway.installer")

MAX_PERMIT_JOIN_S = 254
"""Zigbee 3.0 permits joining for at most 254 s at a time; Z2M 2.x clamps to it."""
RESPONSE_TIMEOUT_S = 10.0
CURRENT_MAJOR = 2


class BridgeError(RuntimeError):
    """Zigbee2MQTT refused a request, did not answer, or cannot be reached; a sentence."""


# --- pure parsing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    version: str | None
    permit_join: bool

    @property
    def major(self) -> int:
        return z2m_major(self.version)


def z2m_major(version: str | None) -> int:
    """The major version of ``1.42.0`` or ``2.6.2-dev``; the current one when unreadable."""
    if version is None:
        return CURRENT_MAJOR
    head = version.strip().split(".", 1)[0]
    return int(head) if head.isdigit() and 0 < int(head) < 100 else CURRENT_MAJOR


def parse_info(payload: bytes) -> BridgeInfo:
    obj = parse_state(payload)
    version = obj.get("version")
    return BridgeInfo(
        version=version[:32] if isinstance(version, str) and version else None,
        permit_join=obj.get("permit_join") is True,
    )


@dataclass(frozen=True, slots=True)
class BridgeResponse:
    ok: bool
    error: str | None
    data: dict[str, Any]
    transaction: str | None


def parse_response(payload: bytes) -> BridgeResponse:
    obj = parse_state(payload)
    status = obj.get("status")
    error = obj.get("error")
    data = obj.get("data")
    transaction = obj.get("transaction")
    return BridgeResponse(
        ok=status == "ok",
        error=str(error)[:300] if error is not None else None,
        data=data if isinstance(data, dict) else {},
        transaction=str(transaction) if isinstance(transaction, str | int) else None,
    )


def permit_join_payload(major: int, seconds: int) -> dict[str, Any]:
    """Open for ``seconds`` (at most 254), or close with 0, in the form this version takes."""
    seconds = max(0, min(seconds, MAX_PERMIT_JOIN_S))
    if major >= 2:
        return {"time": seconds}
    if seconds == 0:
        return {"value": False}
    return {"value": True, "time": seconds}


@dataclass(frozen=True, slots=True)
class InterviewedDevice:
    """What a ``device_interview`` event (or ``device_joined``) says about a device."""

    kind: str
    ieee: str | None
    friendly_name: str | None
    status: str | None
    supported: bool | None
    model: str | None
    vendor: str | None
    description: str | None


def _text(value: object, limit: int = 64) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def parse_join_event(payload: bytes) -> InterviewedDevice:
    """``bridge/event`` with the definition a successful interview carries."""
    obj = parse_state(payload)
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise Z2mParseError("bridge event has no type")
    data = obj.get("data")
    data = data if isinstance(data, dict) else {}
    definition = data.get("definition")
    definition = definition if isinstance(definition, dict) else {}
    supported = data.get("supported")
    return InterviewedDevice(
        kind=kind[:64],
        ieee=_text(data.get("ieee_address")),
        friendly_name=_text(data.get("friendly_name"), 128),
        status=_text(data.get("status")),
        supported=supported if isinstance(supported, bool) else None,
        model=_text(definition.get("model")),
        vendor=_text(definition.get("vendor")),
        description=_text(definition.get("description"), 120),
    )


# --- the link -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BridgeMessage:
    """A bridge event or device list, as received, for whoever watches the network."""

    kind: str
    """``event`` or ``devices``."""
    payload: bytes


OtherHandler = Callable[[str, bytes], None]


@dataclass
class BridgeLink:
    """Requests to Zigbee2MQTT over one open aiomqtt client; ``start()`` before use."""

    client: aiomqtt.Client
    base_topic: str = "zigbee2mqtt"
    response_timeout_s: float = RESPONSE_TIMEOUT_S
    on_other: OtherHandler | None = None
    """Called with messages outside the bridge's topics (the daemon's control topics)."""
    info: BridgeInfo | None = None
    online: bool | None = None
    devices: list[BridgeDevice] = field(default_factory=list)
    watched: asyncio.Queue[BridgeMessage] = field(default_factory=asyncio.Queue)
    _watch: bool = False
    _info_seen: asyncio.Event = field(default_factory=asyncio.Event)
    _devices_seen: asyncio.Event = field(default_factory=asyncio.Event)
    _waiting: dict[str, asyncio.Future[BridgeResponse]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    async def start(self, *, watch: bool = False, extra_topics: tuple[str, ...] = ()) -> None:
        """Subscribe to the bridge's answers (and, with ``watch``, its events) and read."""
        self._watch = watch
        self._reader = asyncio.create_task(self._read(), name="bridge-link")
        base = self.base_topic
        topics = [
            f"{base}/bridge/info",
            f"{base}/bridge/state",
            f"{base}/bridge/devices",
            f"{base}/bridge/response/#",
        ]
        if watch:
            topics.append(f"{base}/bridge/event")
        for topic in (*topics, *extra_topics):
            await self.client.subscribe(topic, qos=1)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
            self._reader = None
        for future in self._waiting.values():
            future.cancel()

    async def wait_info(self, timeout_s: float) -> BridgeInfo | None:
        """``bridge/info`` (retained, so it comes at once if Z2M ever ran); None if not."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._info_seen.wait()
        return self.info

    async def wait_devices(self, timeout_s: float) -> list[BridgeDevice]:
        """The ``bridge/devices`` listing (retained), waiting up to ``timeout_s`` for it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._devices_seen.wait()
        return self.devices

    def listed(self, ieee: str | None) -> BridgeDevice | None:
        """The network member with this IEEE address, as Z2M last listed it."""
        if ieee is None:
            return None
        return next((d for d in self.devices if d.ieee.lower() == ieee.lower()), None)

    async def wait_closed(self) -> None:
        """Return when the connection is gone (the reader ended)."""
        if self._reader is not None:
            await asyncio.wait({self._reader})  # its error is read by stop()

    @property
    def major(self) -> int:
        return self.info.major if self.info is not None else CURRENT_MAJOR

    async def _read(self) -> None:
        prefix = f"{self.base_topic}/bridge/"
        async for message in self.client.messages:
            topic = str(message.topic)
            raw = message.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode()
            if not topic.startswith(prefix):
                if self.on_other is not None:
                    self.on_other(topic, payload)
                continue
            try:
                self._dispatch(topic[len(prefix) :], payload)
            except Z2mParseError as exc:
                log.warning("unusable message on %s: %s", topic[:100], exc.reason)

    def _dispatch(self, rest: str, payload: bytes) -> None:
        if rest == "info" and payload:
            self.info = parse_info(payload)
            self._info_seen.set()
        elif rest == "state" and payload:
            self.online = parse_bridge_state(payload)
        elif rest.startswith("response/") and payload:
            response = parse_response(payload)
            future = self._waiting.pop(response.transaction or "", None)
            if future is not None and not future.done():
                future.set_result(response)
        elif rest == "devices" and payload:
            self.devices = parse_bridge_devices(payload)
            self._devices_seen.set()
            if self._watch:
                self.watched.put_nowait(BridgeMessage("devices", payload))
        elif rest == "event" and payload and self._watch:
            self.watched.put_nowait(BridgeMessage("event", payload))

    async def request(self, command: str, payload: dict[str, Any]) -> BridgeResponse:
        """Send one request and wait for its own answer; BridgeError if none comes."""
        transaction = f"trygg-{secrets.token_hex(6)}"
        future: asyncio.Future[BridgeResponse] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        body = request_body({**payload, "transaction": transaction})
        try:
            await self.client.publish(
                f"{self.base_topic}/bridge/request/{command}", body, qos=1, retain=False
            )
            async with asyncio.timeout(self.response_timeout_s):  # keeps a cancellation
                return await future
        except TimeoutError as exc:
            raise BridgeError(
                f"Zigbee2MQTT did not answer '{command}' within {self.response_timeout_s:g} s; "
                "is it running and connected to this broker?"
            ) from exc
        finally:
            self._waiting.pop(transaction, None)

    async def permit_join(self, seconds: int) -> BridgeResponse:
        return await self.request("permit_join", permit_join_payload(self.major, seconds))

    async def rename(self, old: str, new: str) -> BridgeResponse:
        return await self.request("device/rename", {"from": old, "to": new})

    async def remove(self, ident: str, *, force: bool = False) -> BridgeResponse:
        return await self.request("device/remove", {"id": ident, "force": force})

    async def configure_reporting(self, ident: str, report: ReportingRequest) -> BridgeResponse:
        """Ask the device to report ``report.attribute`` at least every maximum interval."""
        return await self.request(
            "device/configure_reporting", {"id": ident, **report.model_dump(mode="json")}
        )


def request_body(payload: dict[str, Any]) -> str:
    """A request as compact JSON (our own requests hold only strings, ints and booleans)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


@contextlib.asynccontextmanager
async def open_bridge(
    broker: BrokerConfig,
    purpose: str,
    *,
    watch: bool = False,
    extra_topics: tuple[str, ...] = (),
    on_other: OtherHandler | None = None,
    response_timeout_s: float = RESPONSE_TIMEOUT_S,
) -> AsyncIterator[BridgeLink]:
    """Connect to the home's broker with a throw-away session and start a link.

    Raises BridgeError with a sentence when the broker cannot be reached.
    """
    identifier = f"trygg-{purpose}-{secrets.token_hex(4)}"
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=identifier,
        username=broker.username,
        password=broker.password,
        keepalive=broker.keepalive_s,
        clean_session=True,
        timeout=10,
    )
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        raise BridgeError(
            f"cannot reach the home's MQTT broker at {broker.host}:{broker.port}: {exc}"
        ) from exc
    link = BridgeLink(
        client,
        broker.base_topic,
        response_timeout_s=response_timeout_s,
        on_other=on_other,
    )
    try:
        await link.start(watch=watch, extra_topics=extra_topics)
        yield link
    finally:
        await link.stop()
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
