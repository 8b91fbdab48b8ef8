"""An MQTT client that acknowledges a message only when we say so.

aiomqtt 2.5.1 lets paho send PUBACK the moment a message arrives, before anything is on
disk, and hides the DUP flag. This module is the one place that reaches into aiomqtt and
paho internals to fix that (ARCHITECTURE.md §11): paho's manual-ack mode is switched on,
messages are taken from paho's ``on_message`` hook with their packet id and DUP flag,
and :meth:`ManualAckClient.ack` sends the PUBACK. Swapping the MQTT library later
(aiomqtt 3 has manual ack built in) means rewriting this file only.

Session: MQTT 3.1.1, ``clean_session=False`` and a fixed client id, so the broker keeps
QoS 1 messages while we are away and resends un-acknowledged ones (DUP=1) on return.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One PUBLISH as it arrived; acknowledge it with :meth:`ManualAckClient.ack`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool
    arrival: int = field(default=0, compare=False)
    """Position in this connection's arrival order; acks are sent in this order."""


class ManualAckClient(aiomqtt.Client):
    """aiomqtt's client with manual PUBACKs, sent strictly in arrival order.

    Use one instance per connection: ``async with ManualAckClient(...) as client``, then
    ``await client.subscribe_all(base)`` and ``async for message in client.received()``.
    """

    def __init__(
        self,
        hostname: str,
        port: int,
        *,
        identifier: str,
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(
            hostname,
            port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,
            keepalive=keepalive,
            username=username,
            password=password,
            timeout=10,
        )
        # Private: aiomqtt keeps the paho client in ``_client``; paho 2.2 supports manual
        # acknowledgement but aiomqtt 2.5.1 never turns it on.
        self._client.manual_ack_set(True)
        self._loop_thread = threading.get_ident()
        self._inbox: asyncio.Queue[ReceivedMessage] = asyncio.Queue()
        self._arrivals = count(1)
        # arrival -> message for every QoS>0 message not yet acknowledged, oldest first;
        # the value turns True once the caller has acked it.
        self._unacked: OrderedDict[int, tuple[ReceivedMessage, bool]] = OrderedDict()
        self.session_present: bool | None = None
        """From the CONNACK: False means the broker kept nothing for us and resends nothing."""

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Any = None,
    ) -> None:
        """Extends aiomqtt's hook (private API) to keep the CONNACK's session-present flag."""
        if self.session_present is None:
            self.session_present = bool(flags.session_present)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """Replaces aiomqtt's hook (private API) to keep the packet id and the DUP flag.

        paho calls it on the event loop thread (aiomqtt drives paho's socket from the
        loop), in the order the PUBLISH packets arrived.
        """
        try:
            topic = message.topic
        except UnicodeDecodeError:
            # Private: paho keeps the raw topic bytes in ``_topic``; a broker should never
            # forward invalid UTF-8, but if one does the pipeline reports it as foreign.
            topic = message._topic.decode("utf-8", "replace")
        received = ReceivedMessage(
            topic=topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            mid=message.mid,
            dup=bool(message.dup),
            arrival=next(self._arrivals),
        )
        if received.qos > 0:
            self._unacked[received.arrival] = (received, False)
        self._inbox.put_nowait(received)

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            # Private: a broken connection leaves its error in ``_disconnected``; read it so
            # asyncio does not report it as never retrieved (we already logged the cause).
            if self._disconnected.done() and not self._disconnected.cancelled():
                self._disconnected.exception()

    async def subscribe_all(self, base_topic: str) -> None:
        """Subscribe to ``<base>/#`` at QoS 1; a refused subscription is an error."""
        granted = await self.subscribe(f"{base_topic}/#", qos=1)
        codes = [getattr(code, "value", code) for code in granted]
        if any(code not in (0, 1, 2) for code in codes):
            raise aiomqtt.MqttError(f"broker refused the subscription to {base_topic}/#")

    async def received(self) -> AsyncIterator[ReceivedMessage]:
        """Messages in arrival order until the connection drops (then MqttError)."""
        # Private: aiomqtt resolves ``_disconnected`` when the connection ends.
        disconnected = self._disconnected
        while True:
            if disconnected.done():
                break
            getter = asyncio.ensure_future(self._inbox.get())
            waiters: set[asyncio.Future[Any]] = {getter, disconnected}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done() or disconnected.done():
                    getter.cancel()
            if disconnected.done():
                break
            yield getter.result()
        cause = disconnected.exception()
        raise aiomqtt.MqttError("disconnected from the broker") from cause

    def ack(self, message: ReceivedMessage) -> None:
        """Mark ``message`` done; send PUBACKs for the oldest run of done messages.

        MQTT 3.1.1 §4.6 wants acknowledgements in the order the messages arrived, so an
        ack for a later message waits until every earlier one is acked too. Calls from
        other threads are handed to the event loop, which drives paho's socket. A message
        from another connection is ignored: the broker resends it on this one.
        """
        if threading.get_ident() != self._loop_thread:
            # paho's socket is driven by the event loop; never write to it from elsewhere.
            self._loop.call_soon_threadsafe(self.ack, message)
            return
        if message.qos == 0:
            return
        entry = self._unacked.get(message.arrival)
        if entry is None or entry[0] is not message:
            log.debug("ack for mid %d ignored: not pending on this connection", message.mid)
            return
        self._unacked[message.arrival] = (message, True)
        while self._unacked:
            arrival, (oldest, done) = next(iter(self._unacked.items()))
            if not done:
                break
            del self._unacked[arrival]
            rc = self._client.ack(oldest.mid, oldest.qos)
            if rc != paho.MQTT_ERR_SUCCESS:
                log.warning(
                    "PUBACK for mid %d not sent (rc %s); broker will resend", oldest.mid, rc
                )

    @property
    def unacked(self) -> int:
        """How many QoS>0 messages still wait for their PUBACK."""
        return len(self._unacked)
