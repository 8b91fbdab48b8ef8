"""``trygg demo``: a response centre and a simulated home, wired as in production.

Everything runs on loopback from a fresh work directory: a private CA keeps TLS verified,
the centre runs under uvicorn, the home's broker is mosquitto, the gateway is enrolled with
a one-time code exactly as an installer would, and a simulated Zigbee2MQTT home publishes
a door opening now and then and a button press less often. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.mqtt.local_broker import Mosquitto
from drivers.simulators.zigbee_home import BUTTON, DOOR, ZigbeeHome
from gateway.config import AllowedDevice, BrokerConfig, GatewayConfig, save_config
from gateway.daemon import READY_MESSAGE
from gateway.identity import enroll, init_gateway
from response_center import admin
from response_center.db.engine import make_engine, migrate
from response_center.enrolment import create_enrolment_code
from trygg.net import free_port
from trygg.pki import ServerCertificate, create_local_tls
from trygg.wire.clock import system_clock

log = logging.getLogger("trygg.demo")

MUNICIPALITY = ("0301", "Oslo (demo)")
HOME = ("H-0001", "Demoveien 1, 0150 Oslo")
RESIDENT = ("R-0001", "Kari Demo")
OPERATOR = "operator"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DemoSite:
    workdir: Path
    tls: ServerCertificate
    center_url: str
    center_port: int
    database_url: str
    operator_password: str


class ChildProcess:
    """A child whose stderr is forwarded line by line with a prefix, and can be awaited on."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.process: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._ready_text = ""
        self._pump: asyncio.Task[None] | None = None

    async def start(self, ready_text: str) -> None:
        self._ready_text = ready_text
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._pump = asyncio.create_task(self._forward(), name=f"{self.name}-log")
        waiter = asyncio.create_task(self._ready.wait())
        await asyncio.wait(
            {waiter, self._pump}, timeout=START_TIMEOUT_S, return_when="FIRST_COMPLETED"
        )
        if not self._ready.is_set():
            waiter.cancel()
            await self.stop()
            raise RuntimeError(f"the {self.name} did not start; its log is above")

    async def _forward(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            sys.stderr.write(f"[{self.name}] {line}\n")
            if self._ready_text in line:
                self._ready.set()

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


def _trygg(*args: str) -> list[str]:
    return [sys.executable, "-m", "trygg", *args]


def prepare_center(workdir: Path, port: int) -> DemoSite:
    """Create the centre's database, tenant, home, resident and operator login."""
    tls = create_local_tls(workdir / "tls")
    center_dir = workdir / "center"
    center_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database_url = f"sqlite:///{center_dir / 'center.sqlite'}"
    migrate(database_url)
    password = secrets.token_urlsafe(12)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        admin.create_municipality(conn, *MUNICIPALITY)
        admin.create_home(conn, MUNICIPALITY[0], *HOME)
        admin.create_resident(
            conn, MUNICIPALITY[0], HOME[0], display_name=RESIDENT[1], ref=RESIDENT[0]
        )
        admin.create_user(conn, OPERATOR, password, "operator", [MUNICIPALITY[0]])
    engine.dispose()
    return DemoSite(
        workdir=workdir,
        tls=tls,
        center_url=f"https://127.0.0.1:{port}",
        center_port=port,
        database_url=database_url,
        operator_password=password,
    )


def issue_code(site: DemoSite) -> str:
    engine = make_engine(site.database_url)
    with engine.begin() as conn:
        code = create_enrolment_code(
            conn, MUNICIPALITY[0], HOME[0], timedelta(hours=1), "demo", system_clock
        )
    engine.dispose()
    return code


def gateway_config(state_dir: Path, broker_port: int) -> GatewayConfig:
    """The home's allow-list: the simulated button and door sensor, in their rooms."""
    return GatewayConfig(
        state_dir=state_dir,
        broker=BrokerConfig(port=broker_port),
        devices=[
            AllowedDevice(
                friendly_name=BUTTON.friendly_name,
                ieee=BUTTON.ieee,
                profile="aqara.WXKG11LM",
                room="bedroom",
                resident_ref=RESIDENT[0],
            ),
            AllowedDevice(
                friendly_name=DOOR.friendly_name,
                ieee=DOOR.ieee,
                profile="aqara.MCCGQ11LM",
                room="hall",
                resident_ref=RESIDENT[0],
            ),
        ],
    )


async def simulate_home(broker_port: int, interval_s: float, stop: asyncio.Event) -> None:
    """Open and close the door every ``interval_s``; press the button every fourth time."""
    async with aiomqtt.Client("127.0.0.1", broker_port, identifier="trygg-demo-home") as client:
        home = ZigbeeHome(client)
        await home.announce()
        cycle = 0
        while not stop.is_set():
            cycle += 1
            await home.open_door()
            log.info("simulated home: the front door opened")
            if await _wait(stop, interval_s / 3):
                break
            await home.close_door()
            log.info("simulated home: the front door closed")
            if cycle % 4 == 1:
                await home.press()
                log.info("simulated home: the safety-alarm button was pressed")
            if await _wait(stop, interval_s):
                break


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True when asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def banner(site: DemoSite, broker_port: int) -> str:
    return "\n".join(
        [
            "",
            "Trygg demo is running.",
            f"  Response centre: {site.center_url}/",
            f"  Operator login:  {OPERATOR} / {site.operator_password}",
            f"  Alarm API:       {site.center_url}/v1/alarms (after POST /v1/session)",
            f"  TLS CA to trust: {site.tls.ca_file}",
            "  Press the button yourself:",
            f"    {sys.executable} -m drivers.simulators.zigbee_home --port {broker_port} press",
            f"  Gateway status:  {sys.executable} -m trygg gateway status "
            f"--state-dir {site.workdir / 'gateway'}",
            "  Stop with Ctrl-C.",
            "",
        ]
    )


async def run_demo(workdir: Path, port: int, interval_s: float, stop: asyncio.Event) -> None:
    site = prepare_center(workdir, port)
    center = ChildProcess(
        "centre",
        _trygg(
            "center", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--tls-cert", str(site.tls.cert_file), "--tls-key", str(site.tls.key_file),
            "--database-url", site.database_url, "--state-dir", str(workdir / "center"),
        ),
    )  # fmt: skip
    broker = Mosquitto(workdir / "broker", log_all=False)
    gateway = ChildProcess(
        "gateway", _trygg("gateway", "run", "--state-dir", str(workdir / "gateway"))
    )
    try:
        await center.start("Uvicorn running on")
        await asyncio.to_thread(broker.start)
        state_dir = workdir / "gateway"
        init_gateway(state_dir)
        save_config(gateway_config(state_dir, broker.port))
        enrolment = await enroll(
            state_dir, site.center_url, issue_code(site), ca_file=site.tls.ca_file
        )
        log.info("gateway enrolled as %s", enrolment.gateway_id)
        await gateway.start(READY_MESSAGE)
        sys.stdout.write(banner(site, broker.port) + "\n")
        sys.stdout.flush()
        await simulate_home(broker.port, interval_s, stop)
    finally:
        await gateway.stop()
        await asyncio.to_thread(broker.stop)
        await center.stop()


def _run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="trygg-demo-"))
    if args.workdir is not None and workdir.exists() and any(workdir.iterdir()):
        sys.stderr.write(f"trygg demo: error: {workdir} is not empty; pass an empty directory\n")
        return 2
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = args.port or free_port()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_demo(workdir, port, args.interval, stop)

    try:
        asyncio.run(main())
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stderr.write("trygg demo stopped.\n")
    return 0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run a response centre and a simulated home on this machine"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("TRYGG_DEMO_PORT", "0")),
                        help="the centre's HTTPS port (default: a free one)")  # fmt: skip
    parser.add_argument("--interval", type=float, default=20.0,
                        help="seconds between simulated door openings (default 20)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None,
                        help="an empty directory to keep the demo's state in")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.set_defaults(handler=_run)
