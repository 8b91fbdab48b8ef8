"""Keep the gateway subscribed to the local broker, whatever the broker does.

One connection at a time: connect with the persistent session, subscribe to
``<base>/#`` at QoS 1 (again after every reconnect: a broker that lost its state also
lost our subscription), and feed every message to the pipeline without waiting for its
commit. Each message is acknowledged when its commit completes; the client keeps the
PUBACKs in arrival order. When the connection drops or a commit fails, the pipeline is
drained and resynced from the database, then we reconnect with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import aiomqtt

from drivers.mqtt.client import ManualAckClient, ReceivedMessage
from gateway.backoff import RandomSource, backoff_delay
from gateway.config import BrokerConfig
from gateway.pipeline import IngestPipeline

log = logging.getLogger("trygg.gateway.mqtt_ingest")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0


class CommitFailed(RuntimeError):
    """A message's commit failed: it was not acknowledged and the connection is dropped."""


async def run_mqtt_ingest(
    broker: BrokerConfig,
    pipeline: IngestPipeline,
    stop: asyncio.Event,
    *,
    on_subscribed: Callable[[], None] | None = None,
    backoff_initial_s: float = BACKOFF_INITIAL_S,
    backoff_max_s: float = BACKOFF_MAX_S,
    rng: RandomSource = random.random,
) -> None:
    """Ingest until ``stop`` is set; never returns early because of the broker.

    ``on_subscribed`` is called after each successful (re)subscription: tests and the
    status command use it to know ingest is live. Call :meth:`IngestPipeline.start`
    first, and close the outbox only after this returns: it raises only when the
    database itself fails while resyncing, which the daemon must treat as fatal.
    """
    identifier = broker.client_id or f"trygg-{pipeline.gateway_id}"
    failures = 0
    while not stop.is_set():
        try:
            async with ManualAckClient(
                broker.host,
                broker.port,
                identifier=identifier,
                keepalive=broker.keepalive_s,
                username=broker.username,
                password=broker.password,
            ) as client:
                if client.session_present is False:
                    await pipeline.forget_redeliveries()
                await client.subscribe_all(broker.base_topic)
                log.info("subscribed to %s/# on %s:%d", broker.base_topic, broker.host, broker.port)
                failures = 0
                if on_subscribed is not None:
                    on_subscribed()
                await _consume(client, pipeline, stop)
        except (aiomqtt.MqttError, CommitFailed) as exc:
            log.warning("MQTT ingest interrupted: %s", exc)
        finally:
            await pipeline.resync()
        if stop.is_set():
            break
        failures += 1
        delay = backoff_delay(failures, initial_s=backoff_initial_s, cap_s=backoff_max_s, rng=rng)
        log.info("reconnecting to the broker in %.1f s (attempt %d)", delay, failures)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
    log.info("MQTT ingest stopped")


async def _consume(client: ManualAckClient, pipeline: IngestPipeline, stop: asyncio.Event) -> None:
    """Read and submit until stop, disconnection (MqttError) or a failed commit."""
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[None] = loop.create_future()
    live = True

    def settled(message: ReceivedMessage, outcome: asyncio.Future[None]) -> None:
        if not live:
            return  # the connection is gone; the broker resends what we did not ack
        if outcome.cancelled() or outcome.exception() is not None:
            if not failed.done():
                failed.set_exception(CommitFailed(f"commit failed for mid {message.mid}"))
            return
        client.ack(message)
        pipeline.acknowledged(message)

    async def read() -> None:
        async for message in client.received():
            outcome = pipeline.submit(message)
            outcome.add_done_callback(partial(settled, message))

    reader = asyncio.ensure_future(read())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        waiters: set[asyncio.Future[Any]] = {reader, stopper, failed}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        live = False
        for task in (reader, stopper):
            task.cancel()
        await asyncio.gather(reader, stopper, return_exceptions=True)
    if failed.done():
        failed.result()
    if reader.done() and not reader.cancelled() and reader.exception() is not None:
        reader.result()
