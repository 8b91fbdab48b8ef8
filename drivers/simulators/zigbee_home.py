"""A simulated home: what Zigbee2MQTT would publish for a button and a door sensor.

The messages are the real Z2M 2.x topics and payloads (standards.md §4), sent at QoS 1
with Z2M's retain flags, so the demo and end-to-end tests exercise the same parsing and
pipeline as a real installation. Legacy 1.x availability payloads are available too.

Run ``python -m drivers.simulators.zigbee_home --port 1883 press`` to press the button.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiomqtt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulatedDevice:
    friendly_name: str
    ieee: str
    model: str
    vendor: str
    model_id: str
    description: str


BUTTON = SimulatedDevice(
    "bedroom/button",
    "0x00158d00045a1b2c",
    "WXKG11LM",
    "Aqara",
    "lumi.sensor_switch.aq2",
    "Wireless mini switch",
)
DOOR = SimulatedDevice(
    "hall/door",
    "0x00158d000451f2a7",
    "MCCGQ11LM",
    "Aqara",
    "lumi.sensor_magnet.aq2",
    "Door and window sensor",
)


class ZigbeeHome:
    """Publishes as Zigbee2MQTT would, through an open aiomqtt client."""

    def __init__(
        self,
        client: aiomqtt.Client,
        *,
        base_topic: str = "zigbee2mqtt",
        button: SimulatedDevice = BUTTON,
        door: SimulatedDevice = DOOR,
    ) -> None:
        self.client = client
        self.base = base_topic
        self.button = button
        self.door = door
        self.battery = 100
        self.linkquality = 96

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish anything under the base topic at QoS 1 (the raw door for bad input)."""
        await self.client.publish(f"{self.base}/{topic}", payload, qos=1, retain=retain)

    async def _state(self, device: SimulatedDevice, state: dict[str, Any]) -> None:
        body = {**state, "battery": self.battery, "voltage": 3005, "linkquality": self.linkquality}
        await self.publish(device.friendly_name, json.dumps(body))

    async def press(self, action: str = "single", *, clear_after: bool = False) -> None:
        """A button press; ``clear_after`` adds the empty action some Z2M setups send."""
        await self._state(self.button, {"action": action})
        if clear_after:
            await self._state(self.button, {"action": ""})

    async def open_door(self) -> None:
        await self._state(self.door, {"contact": False})

    async def close_door(self) -> None:
        await self._state(self.door, {"contact": True})

    async def availability(
        self, device: SimulatedDevice, online: bool, *, legacy: bool = False
    ) -> None:
        word = "online" if online else "offline"
        payload = word if legacy else json.dumps({"state": word})
        await self.publish(f"{device.friendly_name}/availability", payload, retain=True)

    async def bridge_state(self, online: bool, *, legacy: bool = False) -> None:
        word = "online" if online else "offline"
        payload = word if legacy else json.dumps({"state": word})
        await self.publish("bridge/state", payload, retain=True)

    async def announce(self) -> None:
        """What Z2M publishes at start: bridge online, the device list, availability."""
        await self.bridge_state(True)
        await self.publish("bridge/devices", json.dumps(self.devices_listing()), retain=True)
        for device in (self.button, self.door):
            await self.availability(device, True)

    def devices_listing(self) -> list[dict[str, Any]]:
        listing: list[dict[str, Any]] = [
            {
                "ieee_address": "0x00124b0024c1d2e3",
                "type": "Coordinator",
                "friendly_name": "Coordinator",
                "supported": True,
                "interview_completed": True,
                "definition": None,
            }
        ]
        for device in (self.button, self.door):
            listing.append(
                {
                    "ieee_address": device.ieee,
                    "type": "EndDevice",
                    "friendly_name": device.friendly_name,
                    "model_id": device.model_id,
                    "manufacturer": "LUMI",
                    "power_source": "Battery",
                    "supported": True,
                    "interview_completed": True,
                    "definition": {
                        "model": device.model,
                        "vendor": device.vendor,
                        "description": device.description,
                        "exposes": [],
                        "options": [],
                    },
                }
            )
        return listing


async def _main(args: argparse.Namespace) -> None:
    async with aiomqtt.Client(args.host, args.port, identifier="trygg-sim-home") as client:
        home = ZigbeeHome(client, base_topic=args.base_topic)
        actions = {
            "announce": home.announce,
            "press": home.press,
            "open": home.open_door,
            "close": home.close_door,
        }
        for step in args.steps:
            await actions[step]()
            log.info("simulated home: %s", step)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish Zigbee2MQTT messages of a home")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--base-topic", default="zigbee2mqtt")
    parser.add_argument("steps", nargs="+", choices=["announce", "press", "open", "close"])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
