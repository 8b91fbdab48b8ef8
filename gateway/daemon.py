"""The gateway daemon: one asyncio loop owning the broker link, the outbox and the uplink.

Start order matters: the outbox opens (and recovers rows a crash left in flight) before
anything can produce an event; the pipeline loads its persisted device state before the
first message; only then does MQTT ingest subscribe. Stop order is the reverse, and the
outbox closes last so no commit is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from firmware_profiles.loader import load_profiles
from gateway import ingest_state
from gateway.config import GatewayConfig
from gateway.identity import IdentityError, load_enrolment, load_signing_key
from gateway.installer_control import WATCH_TICK_S, InstallerControl
from gateway.mqtt_ingest import run_mqtt_ingest
from gateway.outbox import Outbox
from gateway.pipeline import IngestPipeline
from gateway.supervision import CHECK_PERIOD_S, run_supervision
from gateway.uplink import Uplink
from trygg.wire.clock import Clock, system_clock

log = logging.getLogger("trygg.gateway")

READY_MESSAGE = "gateway ready: subscribed to the local broker"
"""Logged after each (re)subscription; the demo and the end-to-end tests wait for it."""


class GatewayNotReady(IdentityError):
    """The state directory lacks what the daemon needs (key, enrolment, known profiles)."""


async def run_gateway(
    config: GatewayConfig,
    stop: asyncio.Event,
    *,
    clock: Clock = system_clock,
    on_ready: Callable[[], None] | None = None,
    supervision_period_s: float = CHECK_PERIOD_S,
    reload_requested: asyncio.Event | None = None,
    allow_list_tick_s: float = WATCH_TICK_S,
) -> None:
    """Run until ``stop`` is set; raise GatewayNotReady before touching the broker if unfit.

    Device supervision (silence) is checked every ``supervision_period_s`` against ``clock``.
    The allow-list is reloaded when ``gateway.yaml`` changes (looked at every
    ``allow_list_tick_s``) or ``reload_requested`` is set (SIGHUP), without a restart
    (``gateway/installer_control.py``).
    """
    key = load_signing_key(config.state_dir)
    enrolment = load_enrolment(config.state_dir)
    if enrolment is None:
        raise GatewayNotReady(
            "this gateway is not enrolled: run 'trygg gateway enroll --center URL --code CODE'"
        )
    profiles = load_profiles(config.profiles_dir)
    unknown = sorted({d.profile for d in config.devices} - profiles.keys())
    if unknown:
        raise GatewayNotReady(f"allow-listed devices name unknown profiles: {', '.join(unknown)}")

    async with await Outbox.open(
        config.database_file,
        key=key,
        gateway_id=enrolment.gateway_id,
        limits=config.outbox,
        clock=clock,
        migrations=ingest_state.MIGRATIONS,
    ) as outbox:
        uplink = Uplink(outbox, enrolment, key, config.uplink, clock=clock)
        pipeline = IngestPipeline(
            outbox,
            profiles,
            config.devices,
            clock,
            on_alarm_committed=uplink.notify,
            base_topic=config.broker.base_topic,
        )
        await pipeline.start()
        control = InstallerControl(
            config,
            outbox,
            uplink,
            pipeline,
            enrolment,
            profiles,
            clock,
            watch_tick_s=allow_list_tick_s,
        )
        if reload_requested is not None:
            control.reload_requested = reload_requested
        await control.start()

        def subscribed() -> None:
            log.info("%s (gateway %s)", READY_MESSAGE, enrolment.gateway_id)
            pipeline.link_up()  # device silence counts again from here
            if on_ready is not None:
                on_ready()

        delivery = asyncio.create_task(uplink.run(), name="uplink")
        installer = asyncio.create_task(control.run(stop), name="installer-control")
        supervision = asyncio.create_task(
            run_supervision(pipeline.supervise, stop, period_s=supervision_period_s),
            name="supervision",
        )
        try:
            await run_mqtt_ingest(config.broker, pipeline, stop, on_subscribed=subscribed)
        finally:
            for task in (installer, supervision, delivery):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await pipeline.drain()
            await uplink.aclose()
    log.info("gateway stopped")


def run_until_signalled(config: GatewayConfig) -> None:
    """The process entry point: SIGTERM and SIGINT stop the daemon cleanly; SIGHUP reloads
    the allow-list from ``gateway.yaml`` at once."""

    async def main() -> None:
        stop = asyncio.Event()
        reload_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
        await run_gateway(config, stop, reload_requested=reload_requested)

    asyncio.run(main())
