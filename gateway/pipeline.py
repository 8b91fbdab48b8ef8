"""MQTT ingest: Zigbee2MQTT messages in, durable events out, PUBACK only after commit.

Per message, in arrival order: classify the topic → match the device against the
allow-list → evaluate its profile's rules against the remembered edge state → commit the
events, the new state and an ingest mark (``mqtt_received``) in ONE outbox transaction →
only then may the message be acknowledged. :meth:`IngestPipeline.submit` does the first
three steps at once, on the event loop, and returns a future that resolves when the
message is safe to acknowledge; the reader submits the next message without waiting, so
concurrent commits share one fsync (the outbox group-commits them, in submission order).

Decisions a reader should know:

- In-memory state (edge values, availability, ingest marks) advances at submit time, in
  arrival order. After any failed commit the connection is dropped and :meth:`resync`
  reloads it from the database, so redelivered messages meet durable state only.
- A message with DUP=1 whose ``(mid, topic, sha256)`` matches a stored ingest mark is
  acknowledged without raising again. Marks that are already acknowledged match too: a
  PUBACK lost with its connection makes the broker resend exactly that message. DUP=0
  messages never consult the marks, so a genuinely repeated press always raises.
- Bad input (unknown device or profile, malformed or oversized JSON, wrong types) is
  logged with ids and reasons only, counted, reported at most once per subject per
  ``report_interval`` as ``technical.unknown_device``/``technical.bad_payload``, and
  acknowledged: it never blocks the messages behind it.
- Availability: ``technical.device_offline``/``device_online`` and ``technical.bridge_
  offline``/``bridge_online`` are each raised once per change; the first report of
  "online" is recorded silently. A device's offline is held back while the bridge is
  offline (Z2M cannot know then) and raised when the bridge returns if it still holds.
- A device state the broker had retained (``retain`` set on delivery) never raises an
  action such as a button press; edge properties are still compared and recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial

import sqlite_utils

from drivers.mqtt.client import ReceivedMessage
from drivers.mqtt.zigbee2mqtt import (
    BridgeDevice,
    Z2mParseError,
    Z2mTopicKind,
    classify,
    parse_availability,
    parse_bridge_devices,
    parse_bridge_event,
    parse_bridge_state,
    parse_state,
)
from firmware_profiles.rules import DraftSpec, StateValue, evaluate
from firmware_profiles.schema import Profile
from gateway.config import AllowedDevice
from gateway.ingest_state import (
    BRIDGE,
    MIGRATIONS,
    Availability,
    AvailabilityRecord,
    ReceivedRecord,
    expire_received,
    load_availability,
    load_device_states,
    load_received,
    mark_acked,
    record_received,
    save_availability,
    save_device_state,
)
from gateway.outbox import EventDraft, Outbox, OutboxFull
from trygg.wire.clock import Clock, system_clock
from trygg.wire.envelope import DeviceRef, SignedEvent

log = logging.getLogger("trygg.gateway.pipeline")

AlarmCallback = Callable[[SignedEvent], None]
Write = Callable[[sqlite_utils.Database], None]

REPORT_INTERVAL = timedelta(hours=1)
MAX_REPORTS_PER_INTERVAL = 50
"""Reports of bad input across all subjects per interval: a flood of garbage topics must
not fill the outbox (technical events are never evicted)."""
EXPIRY_INTERVAL = timedelta(hours=1)
MAX_SUBJECT = 128


def _subject(name: str) -> str:
    """A device name or topic as it may appear in logs and event data: bounded, printable."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in name[:MAX_SUBJECT])
    return cleaned or "?"


class IngestPipeline:
    """Turns received Zigbee2MQTT messages into committed events; see the module docstring."""

    def __init__(
        self,
        outbox: Outbox,
        profiles: Mapping[str, Profile],
        allowed_devices: Sequence[AllowedDevice],
        clock: Clock = system_clock,
        on_alarm_committed: AlarmCallback | None = None,
        *,
        base_topic: str = "zigbee2mqtt",
        report_interval: timedelta = REPORT_INTERVAL,
    ) -> None:
        self.outbox = outbox
        self.profiles = dict(profiles)
        self.allowed = list(allowed_devices)
        self.clock = clock
        self.on_alarm_committed = on_alarm_committed
        self.base_topic = base_topic
        self.report_interval = report_interval
        self.counts: Counter[str] = Counter()
        """What happened to messages: events, redelivered, bad_payload, unknown_device, …"""
        self._by_name = {d.friendly_name: d for d in self.allowed}
        self._by_ieee = {d.ieee.lower(): d for d in self.allowed if d.ieee}
        self._ieee_of_name: dict[str, str] = {}
        self._edge: dict[str, dict[str, StateValue]] = {}
        self._avail: dict[str, AvailabilityRecord] = {}
        self._received: dict[int, ReceivedRecord] = {}
        self._ack_marks: list[tuple[int, str]] = []
        """Stored marks whose PUBACK went out; flagged in the next commit, lazily."""
        self._committed_marks: dict[int, tuple[int, str]] = {}
        """Stored marks by mid whose message may now be acknowledged."""
        self._in_flight: set[asyncio.Future[None]] = set()
        self._last_report: dict[tuple[str, str], datetime] = {}
        self._suppressed: Counter[tuple[str, str]] = Counter()
        self._recent_reports: deque[datetime] = deque()
        self._next_expiry: datetime | None = None

    @property
    def gateway_id(self) -> str:
        return self.outbox.gateway_id

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the ingest tables if needed and load what was remembered."""
        for name, fn in MIGRATIONS:
            await self.outbox.register_migration(name, fn)
        await self.resync()

    async def drain(self) -> None:
        """Wait until every submitted message's commit has finished (or failed)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def resync(self) -> None:
        """Drain, then reload all remembered state from the database.

        Called when a connection ends: messages the broker resends must be judged against
        what is durable, not against state a failed commit left only in memory.
        """
        await self.drain()
        marks, self._ack_marks = self._ack_marks, []
        self._committed_marks.clear()
        now = self.clock()

        def load(
            db: sqlite_utils.Database,
        ) -> tuple[
            dict[str, dict[str, StateValue]],
            dict[str, AvailabilityRecord],
            dict[int, ReceivedRecord],
        ]:
            mark_acked(db, marks)
            expired = expire_received(db, now)
            if expired:
                log.info("forgot %d old ingest marks", expired)
            return load_device_states(db), load_availability(db), load_received(db)

        self._edge, self._avail, self._received = await self.outbox.run(load)
        self._next_expiry = now + EXPIRY_INTERVAL

    # -- per message ----------------------------------------------------------------------

    def submit(self, message: ReceivedMessage) -> asyncio.Future[None]:
        """Handle one message; the future resolves when it may be acknowledged.

        The future fails only when the database could not take a commit: then the message
        must not be acknowledged, and the caller drops the connection and resyncs.
        """
        self.counts["received"] += 1
        try:
            return self._dispatch(message)
        except Exception:
            # A bug must neither stop ingest nor block the messages queued behind this one.
            log.exception("ingest failed on mid %d (%s)", message.mid, _subject(message.topic))
            self.counts["internal_error"] += 1
            return self._report("technical.bad_payload", "ingest", "internal error", None)

    def acknowledged(self, message: ReceivedMessage) -> None:
        """The caller has sent ``message``'s PUBACK: flag its ingest mark (no fsync needed)."""
        mark = self._committed_marks.pop(message.mid, None)
        if mark is not None:
            self._ack_marks.append(mark)

    async def handle(self, message: ReceivedMessage) -> None:
        """Submit and wait: for callers that process one message at a time."""
        await self.submit(message)

    def _dispatch(self, message: ReceivedMessage) -> asyncio.Future[None]:
        topic = classify(self.base_topic, message.topic)
        if topic.kind is Z2mTopicKind.DEVICE_STATE and topic.device is not None:
            return self._on_device_state(message, topic.device)
        if topic.kind is Z2mTopicKind.DEVICE_AVAILABILITY and topic.device is not None:
            return self._on_device_availability(message, topic.device)
        if topic.kind is Z2mTopicKind.BRIDGE_STATE:
            return self._on_bridge_state(message)
        if topic.kind is Z2mTopicKind.BRIDGE_DEVICES:
            return self._on_bridge_devices(message)
        if topic.kind is Z2mTopicKind.BRIDGE_EVENT:
            return self._on_bridge_event(message)
        self.counts["ignored"] += 1
        log.debug("ignored %s message on %s", topic.kind.value, _subject(message.topic))
        return self._done()

    def _on_device_state(self, message: ReceivedMessage, name: str) -> asyncio.Future[None]:
        if not message.payload:
            return self._ignore("empty device state (a retained message cleared)", name)
        device = self._match(name)
        if device is None:
            self.counts["unknown_device"] += 1
            log.warning("message from %s, which is not allow-listed", _subject(name))
            return self._report("technical.unknown_device", name, "not allow-listed", None)
        profile = self.profiles.get(device.profile)
        if profile is None:
            self.counts["unknown_profile"] += 1
            log.error("device %s names unknown profile %s", device.friendly_name, device.profile)
            reason = f"unknown profile {_subject(device.profile)}"
            return self._report("technical.unknown_device", device.friendly_name, reason, device)
        digest = hashlib.sha256(message.payload).hexdigest()
        if message.dup and message.qos > 0 and self._already_stored(message, digest):
            self.counts["redelivered"] += 1
            log.info("mid %d from %s was stored before a crash; acking", message.mid, name)
            self._committed_marks[message.mid] = (message.mid, digest)
            return self._done()
        now = self.clock()
        key = device.friendly_name
        try:
            payload = parse_state(message.payload)
            result = evaluate(
                profile, self._edge.get(key, {}), payload, now, retained=message.retain
            )
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad payload from %s (mid %d): %s", key, message.mid, exc.reason)
            return self._report("technical.bad_payload", key, exc.reason, device)
        if result.rejected:
            # Part of the message was refused; what was valid in it is used below.
            self.counts["bad_values"] += 1
            reasons = "; ".join(r.text for r in result.rejected)
            log.warning("bad values from %s (mid %d): %s", key, message.mid, reasons)
        drafts = [self._event_draft(spec, device, profile) for spec in result.drafts]
        writes: list[Write] = []
        if result.state != self._edge.get(key, {}):
            self._edge[key] = result.state
            writes.append(partial(save_device_state, device=key, state=result.state, now=now))
        record: tuple[int, str] | None = None
        if drafts and message.qos > 0:
            record = (message.mid, digest)
            self._received[message.mid] = ReceivedRecord(message.topic, digest)
            writes.append(
                partial(
                    record_received, mid=message.mid, topic=message.topic, sha256=digest, now=now
                )
            )
        if not drafts and not writes:
            return self._done()
        return self._commit(drafts, writes, record=record)

    def _on_device_availability(self, message: ReceivedMessage, name: str) -> asyncio.Future[None]:
        if not message.payload:
            return self._ignore("empty availability (a retained message cleared)", name)
        device = self._match(name)
        if device is None:
            # Unknown devices are reported from their state messages; availability alone
            # says nothing about what the device is.
            return self._ignore("availability of a device that is not allow-listed", name)
        try:
            online = parse_availability(message.payload)
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad availability from %s: %s", device.friendly_name, exc.reason)
            return self._report("technical.bad_payload", device.friendly_name, exc.reason, device)
        drafts, writes = self._device_availability(device, online, self.clock())
        if not writes:
            return self._done()
        return self._commit(drafts, writes)

    def _on_bridge_state(self, message: ReceivedMessage) -> asyncio.Future[None]:
        if not message.payload:
            return self._ignore("empty bridge state", BRIDGE)
        try:
            online = parse_bridge_state(message.payload)
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad bridge state: %s", exc.reason)
            return self._report("technical.bad_payload", BRIDGE, exc.reason, None)
        now = self.clock()
        before = self._avail.get(BRIDGE, AvailabilityRecord(None, None))
        drafts: list[EventDraft] = []
        if online and before.reported == "offline":
            drafts.append(self._technical("technical.bridge_online", None, now))
        elif not online and before.reported != "offline":
            drafts.append(self._technical("technical.bridge_offline", None, now))
        state: Availability = "online" if online else "offline"
        writes: list[Write] = []
        record = AvailabilityRecord(state, state)
        if record != before:
            self._avail[BRIDGE] = record
            writes.append(partial(save_availability, subject=BRIDGE, record=record, now=now))
        if online:
            for device in self.allowed:
                held = self._avail.get(_device_subject(device))
                if held is not None and held.observed == "offline" and held.reported != "offline":
                    more_drafts, more_writes = self._device_availability(device, False, now)
                    drafts += more_drafts
                    writes += more_writes
        if not writes:
            return self._done()
        return self._commit(drafts, writes)

    def _device_availability(
        self, device: AllowedDevice, online: bool, now: datetime
    ) -> tuple[list[EventDraft], list[Write]]:
        subject = _device_subject(device)
        before = self._avail.get(subject, AvailabilityRecord(None, None))
        reported = before.reported
        drafts: list[EventDraft] = []
        if online:
            if reported == "offline":
                drafts.append(self._technical("technical.device_online", device, now))
            reported = "online"
        elif reported != "offline":
            if self._bridge_offline:
                log.info("offline of %s held back: the bridge is offline", device.friendly_name)
            else:
                drafts.append(self._technical("technical.device_offline", device, now))
                reported = "offline"
        record = AvailabilityRecord(reported, "online" if online else "offline")
        if record == before:
            return [], []
        self._avail[subject] = record
        return drafts, [partial(save_availability, subject=subject, record=record, now=now)]

    @property
    def _bridge_offline(self) -> bool:
        bridge = self._avail.get(BRIDGE)
        return bridge is not None and bridge.observed == "offline"

    def _on_bridge_devices(self, message: ReceivedMessage) -> asyncio.Future[None]:
        if not message.payload:
            return self._ignore("empty device list", BRIDGE)
        try:
            devices = parse_bridge_devices(message.payload)
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad bridge/devices: %s", exc.reason)
            return self._report("technical.bad_payload", BRIDGE, exc.reason, None)
        self._ieee_of_name = {d.friendly_name: d.ieee.lower() for d in devices}
        drafts = [d for d in (self._check_listed(entry) for entry in devices) if d is not None]
        return self._commit(drafts, []) if drafts else self._done()

    def _check_listed(self, entry: BridgeDevice) -> EventDraft | None:
        """Report network members that are not allow-listed or not the model paired."""
        if entry.type == "Coordinator":
            return None
        allowed = self._by_ieee.get(entry.ieee.lower()) or self._by_name.get(entry.friendly_name)
        if allowed is None:
            log.warning("%s is in the Zigbee network but not allow-listed", entry.ieee)
            reason = "in the Zigbee network, not allow-listed"
            return self._report_draft("technical.unknown_device", entry.ieee, reason, None)
        profile = self.profiles.get(allowed.profile)
        if profile is None or entry.model is None:
            return None
        fingerprint = profile.fingerprint
        if entry.model == fingerprint.model or entry.model_id in fingerprint.model_id:
            return None
        log.warning(
            "%s is a %s, but allow-listed as %s", allowed.friendly_name, entry.model, profile.id
        )
        reason = f"model {_subject(entry.model)} does not match profile {profile.id}"
        return self._report_draft("technical.unknown_device", entry.ieee, reason, allowed)

    def _on_bridge_event(self, message: ReceivedMessage) -> asyncio.Future[None]:
        try:
            event = parse_bridge_event(message.payload)
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad bridge/event: %s", exc.reason)
            return self._report("technical.bad_payload", BRIDGE, exc.reason, None)
        known = (event.ieee is not None and event.ieee.lower() in self._by_ieee) or (
            event.friendly_name is not None and event.friendly_name in self._by_name
        )
        if event.type == "device_leave" and known:
            log.warning("allow-listed device %s left the Zigbee network", event.friendly_name)
        if event.type in ("device_joined", "device_announce", "device_interview") and not known:
            subject = event.ieee or event.friendly_name or "?"
            log.warning("device %s joined the Zigbee network, not allow-listed", subject)
            reason = "joined the Zigbee network, not allow-listed"
            return self._report("technical.unknown_device", subject, reason, None)
        return self._ignore(f"bridge event {event.type}", BRIDGE)

    # -- helpers --------------------------------------------------------------------------

    def _match(self, name: str) -> AllowedDevice | None:
        """By friendly name, by IEEE address in the topic, or by the IEEE Z2M lists it under."""
        device = self._by_name.get(name) or self._by_ieee.get(name.lower())
        if device is None and name in self._ieee_of_name:
            device = self._by_ieee.get(self._ieee_of_name[name])
        return device

    def _already_stored(self, message: ReceivedMessage, digest: str) -> bool:
        mark = self._received.get(message.mid)
        return mark is not None and mark.topic == message.topic and mark.sha256 == digest

    def _event_draft(self, spec: DraftSpec, device: AllowedDevice, profile: Profile) -> EventDraft:
        return EventDraft(
            event_class=spec.event_class,
            type=spec.type,
            occurred_at=spec.occurred_at,
            priority=spec.priority,
            device=DeviceRef(id=device.friendly_name, profile=profile.id, room=device.room),
            data=spec.data,
            vkp_alert_code=spec.vkp_alert_code,
            resident_ref=device.resident_ref,
        )

    def _technical(self, kind: str, device: AllowedDevice | None, now: datetime) -> EventDraft:
        return EventDraft(
            event_class="technical",
            type=kind,
            occurred_at=now,
            device=None
            if device is None
            else DeviceRef(id=device.friendly_name, profile=device.profile, room=device.room),
            data={"source": "zigbee2mqtt"},
            resident_ref=None if device is None else device.resident_ref,
        )

    def _report(
        self, kind: str, subject: str, reason: str, device: AllowedDevice | None
    ) -> asyncio.Future[None]:
        draft = self._report_draft(kind, subject, reason, device)
        return self._commit([draft], []) if draft is not None else self._done()

    def _report_draft(
        self, kind: str, subject: str, reason: str, device: AllowedDevice | None
    ) -> EventDraft | None:
        """A report of bad input, unless this subject was reported within the interval."""
        now = self.clock()
        key = (kind, _subject(subject))
        self._suppressed[key] += 1
        last = self._last_report.get(key)
        if last is not None and now - last < self.report_interval:
            return None
        while self._recent_reports and now - self._recent_reports[0] >= self.report_interval:
            self._recent_reports.popleft()
        if len(self._recent_reports) >= MAX_REPORTS_PER_INTERVAL:
            self.counts["reports_suppressed"] += 1
            return None
        self._recent_reports.append(now)
        self._forget_old_reports(now)
        self._last_report[key] = now
        occurrences = self._suppressed.pop(key)
        self.counts["reports"] += 1
        technical = self._technical(kind, device, now)
        return EventDraft(
            event_class="technical",
            type=kind,
            occurred_at=now,
            device=technical.device,
            resident_ref=technical.resident_ref,
            data={"subject": key[1], "reason": reason[:200], "occurrences": occurrences},
        )

    def _forget_old_reports(self, now: datetime) -> None:
        if len(self._last_report) < 1000:
            return
        for key, at in list(self._last_report.items()):
            if now - at >= self.report_interval:
                del self._last_report[key]
                self._suppressed.pop(key, None)

    def _ignore(self, why: str, subject: str) -> asyncio.Future[None]:
        self.counts["ignored"] += 1
        log.debug("ignored: %s (%s)", why, _subject(subject))
        return self._done()

    def _done(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def _commit(
        self,
        drafts: list[EventDraft],
        writes: list[Write],
        *,
        record: tuple[int, str] | None = None,
    ) -> asyncio.Future[None]:
        """Start one outbox commit (events + writes + pending ack marks) in arrival order."""
        now = self.clock()
        marks, self._ack_marks = self._ack_marks, []
        expire = self._next_expiry is not None and now >= self._next_expiry
        if expire:
            self._next_expiry = now + EXPIRY_INTERVAL

        def also(db: sqlite_utils.Database) -> None:
            if marks:
                mark_acked(db, marks)
            for write in writes:
                write(db)
            if expire:
                expire_received(db, now)

        task = asyncio.ensure_future(self._run_commit(drafts, also, marks, record))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _run_commit(
        self,
        drafts: list[EventDraft],
        also: Write,
        marks: list[tuple[int, str]],
        record: tuple[int, str] | None,
    ) -> None:
        try:
            signed = await self.outbox.commit(drafts, also=also)
        except (OutboxFull, ValueError) as exc:
            if not drafts:
                raise
            # The outbox refused these events (full of alarms, or not a valid event): the
            # state writes went with them. Log, count and let the message be acknowledged;
            # the remembered state heals with the device's next report.
            self._ack_marks.extend(marks)
            if record is not None:
                self._received.pop(record[0], None)
            self.counts["refused"] += len(drafts)
            types = ",".join(sorted({d.type for d in drafts}))
            log.error("outbox refused %d event(s) %s: %s", len(drafts), types, exc)
            return
        self.counts["events"] += len(signed)
        if record is not None:
            self._committed_marks[record[0]] = record
        for event in signed:
            if event.event.event_class == "alarm":
                log.info("alarm %s committed (%s)", event.event.event_id, event.event.type)
                self._notify(event)

    def _notify(self, event: SignedEvent) -> None:
        """Wake whoever sends alarms on; their failure must not undo a stored alarm's ack."""
        if self.on_alarm_committed is None:
            return
        try:
            self.on_alarm_committed(event)
        except Exception:
            log.exception("alarm callback failed for %s", event.event.event_id)


def _device_subject(device: AllowedDevice) -> str:
    return f"device:{device.friendly_name}"
