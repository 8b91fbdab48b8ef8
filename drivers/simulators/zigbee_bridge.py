"""A simulated Zigbee2MQTT bridge: the request/response side of Z2M, for pairing and device tests.

It answers ``bridge/request/permit_join``, ``device/rename`` and ``device/remove`` on
``bridge/response/...`` the way the Z2M version it pretends to be does, publishes
``bridge/info``, ``bridge/state`` and ``bridge/devices`` (retained), and lets a test make a
device join: ``device_joined``, ``device_announce``, ``device_interview`` started and then
successful (with its definition) or failed, each followed by an updated ``bridge/devices``
(standards.md §4.1, Koenkk/zigbee2mqtt.io ``mqtt_topics_and_messages.md``).

Version matters for ``permit_join``: Z2M 2.x takes ``{"time": 0..254, "device"?: name}``
and refuses a payload without ``time`` ("Invalid payload", Koenkk/zigbee2mqtt#28894), so
an old-style ``{"value": false}`` would leave the network open; 1.x wants ``{"value": bool,
"time"?: s}``. The simulator refuses exactly what the real one refuses, so a client that
sends the wrong form fails a test instead of a home.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiomqtt

from drivers.simulators.zigbee_home import SimulatedDevice
from trygg.wire.clock import Clock, system_clock

log = logging.getLogger(__name__)

COORDINATOR_IEEE = "0x00124b0024c1d2e3"
MAX_PERMIT_JOIN_S = 254
"""Zigbee 3.0 closes a permit-join after at most 254 s; Z2M 2.x clamps to it."""


@dataclass
class Member:
    """A device in the simulated network."""

    ieee: str
    friendly_name: str
    device: SimulatedDevice | None
    """None: Zigbee2MQTT has no definition for it (unsupported)."""
    interview_completed: bool = True
    power_source: str = "Battery"

    def listing(self) -> dict[str, Any]:
        definition = None
        if self.device is not None and self.interview_completed:
            definition = {
                "model": self.device.model,
                "vendor": self.device.vendor,
                "description": self.device.description,
                "exposes": [],
                "options": [],
            }
        return {
            "ieee_address": self.ieee,
            "type": "EndDevice",
            "network_address": int(self.ieee[-4:], 16),
            "friendly_name": self.friendly_name,
            "model_id": self.device.model_id if self.device is not None else None,
            "manufacturer": "LUMI" if self.device is not None else None,
            "power_source": self.power_source,
            "supported": definition is not None,
            "disabled": False,
            "interviewing": not self.interview_completed,
            "interview_completed": self.interview_completed,
            "definition": definition,
        }


@dataclass
class Request:
    """One request the bridge received, as parsed JSON (or the raw text)."""

    command: str
    payload: Any


@dataclass
class SimulatedBridge:
    """Zigbee2MQTT's bridge over an open aiomqtt client of its own; ``async with`` it."""

    client: aiomqtt.Client
    version: str = "2.6.2"
    base_topic: str = "zigbee2mqtt"
    clock: Clock = system_clock
    members: dict[str, Member] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    refuse_remove: set[str] = field(default_factory=set)
    """IEEE addresses of sleepy devices that never answer a leave request."""
    permit_join_until: datetime | None = None
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def major(self) -> int:
        head = self.version.split(".", 1)[0]
        return int(head) if head.isdigit() else 2

    @property
    def join_open(self) -> bool:
        until = self.permit_join_until
        return until is not None and self.clock() < until

    def permit_join_requests(self) -> list[Any]:
        return [r.payload for r in self.requests if r.command == "permit_join"]

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SimulatedBridge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, announce: bool = True) -> None:
        """Subscribe to requests, then publish what Z2M publishes when it starts."""
        await self.client.subscribe(f"{self.base_topic}/bridge/request/#", qos=1)
        self._reader = asyncio.create_task(self._read(), name="simulated-bridge")
        if announce:
            await self.announce()

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def announce(self) -> None:
        await self.publish("bridge/state", {"state": "online"}, retain=True)
        await self.publish_info()
        await self.publish_devices()

    # -- what Z2M publishes ---------------------------------------------------------------

    async def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        await self.client.publish(f"{self.base_topic}/{topic}", body, qos=1, retain=retain)

    async def publish_info(self) -> None:
        info: dict[str, Any] = {
            "version": self.version,
            "commit": "simulated",
            "coordinator": {"ieee_address": COORDINATOR_IEEE, "type": "zStack3x0", "meta": {}},
            "network": {"channel": 15, "pan_id": 6754, "extended_pan_id": "0xdddddddddddddddd"},
            "log_level": "info",
            "permit_join": self.join_open,
            "restart_required": False,
            "config": {},
        }
        if self.major >= 2 and self.permit_join_until is not None and self.join_open:
            info["permit_join_end"] = int(self.permit_join_until.timestamp() * 1000)
        await self.publish("bridge/info", info, retain=True)

    async def publish_devices(self) -> None:
        coordinator = {
            "ieee_address": COORDINATOR_IEEE,
            "type": "Coordinator",
            "network_address": 0,
            "friendly_name": "Coordinator",
            "supported": True,
            "interview_completed": True,
            "definition": None,
        }
        listing = [coordinator, *(m.listing() for m in self.members.values())]
        await self.publish("bridge/devices", listing, retain=True)

    async def event(self, kind: str, data: dict[str, Any]) -> None:
        await self.publish("bridge/event", {"type": kind, "data": data})

    async def state(self, name: str, payload: dict[str, Any]) -> None:
        """A device's state message under its current friendly name."""
        await self.publish(name, payload)

    # -- devices ------------------------------------------------------------------------------

    def add_member(self, device: SimulatedDevice, *, name: str | None = None) -> Member:
        """A device already in the network (paired before this test)."""
        member = Member(device.ieee, name or device.friendly_name, device)
        self.members[device.ieee] = member
        return member

    async def join(
        self,
        device: SimulatedDevice | None,
        *,
        ieee: str | None = None,
        interview: str = "successful",
    ) -> bool:
        """A device tries to join; it gets in only while permit-join is open.

        ``device=None`` joins something Zigbee2MQTT has no definition for (pass ``ieee``).
        Returns whether it joined.
        """
        address = device.ieee if device is not None else ieee
        if address is None:
            raise ValueError("an unsupported device needs an ieee address")
        if not self.join_open:
            log.info("simulated bridge: %s knocked, but joining is not permitted", address)
            return False
        member = Member(address, address, device, interview_completed=False)
        self.members[address] = member
        ids = {"friendly_name": address, "ieee_address": address}
        await self.event("device_joined", ids)
        await self.publish_devices()
        await self.event("device_announce", ids)
        await self.event("device_interview", {**ids, "status": "started"})
        if interview != "successful":
            await self.event("device_interview", {**ids, "status": "failed"})
            return True
        member.interview_completed = True
        done: dict[str, Any] = {**ids, "status": "successful", "supported": device is not None}
        if device is not None:
            done["definition"] = {
                "model": device.model,
                "vendor": device.vendor,
                "description": device.description,
                "exposes": [],
                "options": [],
            }
        await self.event("device_interview", done)
        await self.publish_devices()
        return True

    def named(self, name_or_ieee: str) -> Member | None:
        found = self.members.get(name_or_ieee)
        if found is not None:
            return found
        return next((m for m in self.members.values() if m.friendly_name == name_or_ieee), None)

    # -- requests -----------------------------------------------------------------------------

    async def _read(self) -> None:
        prefix = f"{self.base_topic}/bridge/request/"
        async for message in self.client.messages:
            topic = str(message.topic)
            if not topic.startswith(prefix):
                continue
            command = topic[len(prefix) :]
            raw = message.payload
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else ""
            try:
                payload: Any = json.loads(text) if text else ""
            except ValueError:
                payload = text
            self.requests.append(Request(command, payload))
            try:
                await self._answer(command, payload)
            except Exception:
                log.exception("simulated bridge failed on %s", command)
            async with self._changed:
                self._changed.notify_all()

    async def wait_for_request(self, command: str, count: int = 1) -> list[Any]:
        """Block until ``count`` requests of ``command`` have arrived; return their payloads."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: len([r for r in self.requests if r.command == command]) >= count
            )
        return [r.payload for r in self.requests if r.command == command]

    async def _answer(self, command: str, payload: Any) -> None:
        handlers = {
            "permit_join": self._permit_join,
            "device/rename": self._rename,
            "device/remove": self._remove,
            "device/configure_reporting": self._configure_reporting,
            "health_check": self._health_check,
        }
        handler = handlers.get(command)
        if handler is None:
            await self._respond(command, payload, error=f"Request '{command}' is not supported")
            return
        try:
            data = await handler(payload)
        except ValueError as exc:
            await self._respond(command, payload, error=str(exc))
            return
        await self._respond(command, payload, data=data)

    async def _respond(
        self,
        command: str,
        request: Any,
        *,
        data: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"data": data or {}, "status": "error" if error else "ok"}
        if error:
            body["error"] = error
        if isinstance(request, dict) and "transaction" in request:
            body["transaction"] = request["transaction"]
        await self.publish(f"bridge/response/{command}", body)

    async def _permit_join(self, payload: Any) -> dict[str, Any]:
        if self.major >= 2:
            if not isinstance(payload, dict) or "time" not in payload:
                raise ValueError("Invalid payload")
            time = payload["time"]
            if not isinstance(time, int) or isinstance(time, bool):
                raise ValueError("Invalid payload")
            seconds = max(0, min(time, MAX_PERMIT_JOIN_S))
            open_ = seconds > 0
            data: dict[str, Any] = {"time": seconds}
        else:
            if isinstance(payload, dict):
                if "value" not in payload:
                    raise ValueError("Invalid payload")
                value = payload["value"]
                time = payload.get("time")
            else:
                value, time = payload, None
            if isinstance(value, str):
                value = value.lower() == "true"
            open_ = bool(value)
            seconds = int(time) if isinstance(time, int) and time > 0 else MAX_PERMIT_JOIN_S
            data = {"value": open_}
            if isinstance(time, int):
                data["time"] = time
        device = payload.get("device") if isinstance(payload, dict) else None
        if device is not None:
            if self.named(str(device)) is None:
                raise ValueError(f"Device '{device}' does not exist")
            data["device"] = device
        self.permit_join_until = self.clock() + timedelta(seconds=seconds) if open_ else None
        log.info("simulated bridge: permit join %s", f"{seconds} s" if open_ else "closed")
        await self.publish_info()
        return data

    async def _rename(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or "to" not in payload or "from" not in payload:
            raise ValueError("Invalid payload")
        old, new = str(payload["from"]), str(payload["to"])
        member = self.named(old)
        if member is None:
            raise ValueError(f"Device '{old}' does not exist")
        if any(m.friendly_name == new for m in self.members.values() if m is not member):
            raise ValueError(f"friendly_name '{new}' is already in use")
        previous = member.friendly_name
        member.friendly_name = new
        await self.publish(previous, "", retain=True)  # Z2M clears the old retained state
        await self.publish_devices()
        return {"from": previous, "to": new, "homeassistant_rename": False}

    async def _configure_reporting(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or "id" not in payload or "attribute" not in payload:
            raise ValueError("Invalid payload")
        if self.named(str(payload["id"])) is None:
            raise ValueError(f"Device '{payload['id']}' does not exist")
        return {k: v for k, v in payload.items() if k != "transaction"}

    async def _remove(self, payload: Any) -> dict[str, Any]:
        ident = payload.get("id") if isinstance(payload, dict) else payload
        force = bool(payload.get("force")) if isinstance(payload, dict) else False
        block = bool(payload.get("block")) if isinstance(payload, dict) else False
        if not isinstance(ident, str) or not ident:
            raise ValueError("Invalid payload")
        member = self.named(ident)
        if member is None:
            raise ValueError(f"Device '{ident}' does not exist")
        if member.ieee in self.refuse_remove and not force:
            raise ValueError(
                f"Failed to remove device '{member.friendly_name}' (block: {block}, force: "
                f"{force}) (Error: AREQ - ZDO - mgmtLeaveRsp after 10000ms)"
            )
        del self.members[member.ieee]
        await self.publish(member.friendly_name, "", retain=True)
        if not force:
            await self.event(
                "device_leave", {"ieee_address": member.ieee, "friendly_name": member.friendly_name}
            )
        await self.publish_devices()
        return {"id": ident, "block": block, "force": force}

    async def _health_check(self, payload: Any) -> dict[str, Any]:
        return {"healthy": True}
