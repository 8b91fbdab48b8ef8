"""The manual-ack MQTT client against a real mosquitto: PUBACK only when asked, in order."""

from __future__ import annotations

import asyncio
import re

import aiomqtt
import pytest

from drivers.mqtt.client import ManualAckClient, ReceivedMessage
from tests.support.mosquitto import Mosquitto


async def take(client: ManualAckClient, n: int) -> list[ReceivedMessage]:
    got: list[ReceivedMessage] = []
    async for message in client.received():
        got.append(message)
        if len(got) == n:
            break
    return got


async def publish(broker: Mosquitto, *payloads: str, topic: str = "z/dev") -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="publisher") as pub:
        for payload in payloads:
            await pub.publish(topic, payload, qos=1)


def pubacks(broker: Mosquitto, client_id: str, after: int = 0) -> list[int]:
    pattern = re.compile(rf"Received PUBACK from {client_id} \(Mid: (\d+)")
    return [int(m.group(1)) for line in broker.log_lines()[after:] if (m := pattern.search(line))]


async def test_unacked_messages_come_back_with_dup_and_the_same_packet_id(
    mosquitto: Mosquitto,
) -> None:
    async with ManualAckClient(mosquitto.host, mosquitto.port, identifier="gw-a") as client:
        await client.subscribe_all("z")
        await publish(mosquitto, "one", "two", "three")
        first = await take(client, 3)
        assert [(m.payload, m.qos, m.dup) for m in first] == [
            (b"one", 1, False),
            (b"two", 1, False),
            (b"three", 1, False),
        ]
        client.ack(first[0])
        await mosquitto.log_line(rf"Received PUBACK from gw-a \(Mid: {first[0].mid},")
        assert client.unacked == 2

    async with ManualAckClient(mosquitto.host, mosquitto.port, identifier="gw-a") as client:
        again = await take(client, 2)
        assert [(m.payload, m.mid, m.dup) for m in again] == [
            (b"two", first[1].mid, True),
            (b"three", first[2].mid, True),
        ]
        for message in again:
            client.ack(message)
        await mosquitto.log_line(rf"Received PUBACK from gw-a \(Mid: {first[2].mid},")
    assert pubacks(mosquitto, "gw-a") == [first[0].mid, first[1].mid, first[2].mid]


async def test_acks_go_out_in_arrival_order(mosquitto: Mosquitto) -> None:
    async with ManualAckClient(mosquitto.host, mosquitto.port, identifier="gw-b") as client:
        await client.subscribe_all("z")
        await publish(mosquitto, "a", "b", "c")
        a, b, c = await take(client, 3)
        mark = mosquitto.mark()
        client.ack(c)
        client.ack(b)
        assert client.unacked == 3, "nothing may be acked while the oldest is pending"
        client.ack(a)
        assert client.unacked == 0
        await mosquitto.log_line(rf"Received PUBACK from gw-b \(Mid: {c.mid},", after=mark)
        assert pubacks(mosquitto, "gw-b", mark) == [a.mid, b.mid, c.mid]


async def test_ack_of_a_message_from_an_earlier_connection_is_ignored(
    mosquitto: Mosquitto,
) -> None:
    async with ManualAckClient(mosquitto.host, mosquitto.port, identifier="gw-c") as client:
        await client.subscribe_all("z")
        await publish(mosquitto, "x")
        (old,) = await take(client, 1)
    async with ManualAckClient(mosquitto.host, mosquitto.port, identifier="gw-c") as client:
        (resent,) = await take(client, 1)
        client.ack(old)  # a stale message object: must not ack the new delivery
        assert client.unacked == 1
        client.ack(resent)
        assert client.unacked == 0


async def test_received_ends_with_an_error_when_the_broker_goes_away(
    mosquitto: Mosquitto,
) -> None:
    async with ManualAckClient(mosquitto.host, mosquitto.port, identifier="gw-d") as client:
        await client.subscribe_all("z")
        mosquitto.stop()
        with pytest.raises(aiomqtt.MqttError):
            await take(client, 1)


async def test_an_ack_from_another_thread_is_sent_by_the_loop(mosquitto: Mosquitto) -> None:
    async with ManualAckClient(mosquitto.host, mosquitto.port, identifier="gw-e") as client:
        await client.subscribe_all("z")
        await publish(mosquitto, "t")
        (message,) = await take(client, 1)
        await asyncio.to_thread(client.ack, message)
        await mosquitto.log_line(rf"Received PUBACK from gw-e \(Mid: {message.mid},")
        assert client.unacked == 0
