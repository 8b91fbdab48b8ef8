"""``trygg demo``: a response centre and a simulated home, wired as in production.

Everything runs on loopback from a fresh work directory (see trygg/localsite.py): a
private CA keeps TLS verified, the centre runs under uvicorn, the home's broker is
mosquitto, the gateway is enrolled with a one-time code exactly as an installer would,
and a simulated Zigbee2MQTT home opens its door now and then and presses its safety-alarm
button less often. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.simulators.zigbee_home import ZigbeeHome
from trygg.localsite import OPERATOR, LocalSite, forward_to_stderr

log = logging.getLogger("trygg.demo")


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


def banner(site: LocalSite, broker_port: int) -> str:
    python = sys.executable
    return "\n".join(
        [
            "",
            "Trygg demo is running.",
            f"  Response centre: {site.center_url}  (TLS CA to trust: {site.ca_file})",
            f"  Operator login:  {OPERATOR} / {site.operator_password}",
            "  The alarm queue, as an operator's console reads it:",
            f"    curl -s --cacert {site.ca_file} -c /tmp/trygg-demo.cookies "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"username":"{OPERATOR}","password":"{site.operator_password}"}}\' '
            f"{site.center_url}/v1/session",
            f"    curl -s --cacert {site.ca_file} -b /tmp/trygg-demo.cookies "
            f"{site.center_url}/v1/alarms",
            "  Press the button yourself:",
            f"    {python} -m drivers.simulators.zigbee_home --port {broker_port} press",
            f"  Gateway status:  {python} -m trygg gateway status --state-dir {site.gateway_dir}",
            "  Stop with Ctrl-C.",
            "",
        ]
    )


async def run_demo(site: LocalSite, interval_s: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.to_thread(site.start)
        assert site.broker is not None and site.enrolment is not None
        log.info("gateway enrolled as %s", site.enrolment.gateway_id)
        sys.stdout.write(banner(site, site.broker.port) + "\n")
        sys.stdout.flush()
        await simulate_home(site.broker.port, interval_s, stop)
    finally:
        await asyncio.to_thread(site.stop)


def _run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="trygg-demo-"))
    if args.workdir is not None and workdir.exists() and any(workdir.iterdir()):
        sys.stderr.write(f"trygg demo: error: {workdir} is not empty; pass an empty directory\n")
        return 2
    site = LocalSite(workdir, center_port=args.port, sink=forward_to_stderr)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_demo(site, args.interval, stop)

    try:
        asyncio.run(main())
    except RuntimeError as exc:  # a part that could not start says why in its message
        sys.stderr.write(f"trygg demo: error: {exc}\n")
        return 2
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
