"""Shared parts of the installer tests: a simulated Z2M bridge on a real broker, devices to
pair, and a collector that waits for what the installer is shown (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt

from drivers.simulators.zigbee_bridge import SimulatedBridge
from drivers.simulators.zigbee_home import SimulatedDevice
from gateway.config import BrokerConfig, GatewayConfig, save_config
from tests.support.mosquitto import Mosquitto
from trygg.wire.clock import Clock, system_clock

NEW_BUTTON = SimulatedDevice(
    "0x00158d0009a1b2c3",
    "0x00158d0009a1b2c3",
    "WXKG11LM",
    "Aqara",
    "lumi.sensor_switch.aq2",
    "Wireless mini switch",
)
NEW_DOOR = SimulatedDevice(
    "0x00158d0009d00d01",
    "0x00158d0009d00d01",
    "MCCGQ11LM",
    "Aqara",
    "lumi.sensor_magnet.aq2",
    "Door and window sensor",
)
BULB = SimulatedDevice(
    "0x90fd9ffffe6494fc",
    "0x90fd9ffffe6494fc",
    "LED1624G9",
    "IKEA",
    "TRADFRI bulb E27",
    "TRADFRI LED bulb",
)
UNSUPPORTED_IEEE = "0x00169a00022256da"


class Lines:
    """What a command printed, line by line, with a way to wait for a line to appear."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._added = asyncio.Event()

    def __call__(self, text: str) -> None:
        self.lines.extend(text.splitlines() or [""])
        self._added.set()

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.lines if regex.search(line)]

    async def wait_for(self, pattern: str, within_s: float = 10.0) -> str:
        """The first line matching ``pattern``, waiting up to ``within_s`` for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not (found := self.matching(pattern)):
            self._added.clear()
            remaining = deadline - loop.time()
            try:
                await asyncio.wait_for(self._added.wait(), max(remaining, 0.0))
            except TimeoutError:
                shown = "\n".join(self.lines)
                raise AssertionError(f"never shown /{pattern}/; shown:\n{shown}") from None
        return found[0]


def gateway_config(state_dir: Path, broker: Mosquitto, **kwargs: object) -> GatewayConfig:
    config = GatewayConfig.model_validate(
        {
            "state_dir": state_dir,
            "broker": BrokerConfig(host=broker.host, port=broker.port),
            **kwargs,
        }
    )
    save_config(config)
    return config


@asynccontextmanager
async def simulated_bridge(
    broker: Mosquitto, *, version: str = "2.6.2", clock: Clock = system_clock
) -> AsyncIterator[SimulatedBridge]:
    """A Z2M bridge answering on the broker with its own client."""
    client = aiomqtt.Client(broker.host, broker.port, identifier=f"sim-z2m-{version}")
    async with client, SimulatedBridge(client, version=version, clock=clock) as bridge:
        yield bridge
