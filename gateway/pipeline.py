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
- Discovery (``gateway.discovery``): ``bridge/devices`` and ``bridge/event`` keep the
  device inventory; each network member that is not allow-listed, or cannot be what it
  was paired as, is reported once (``technical.unknown_device``/``unsupported_device``),
  and its messages are never used. Messages from such a device add no second report.
- Supervision (``gateway.supervision``): every live message from an allow-listed device,
  and its availability, feed the supervisor; its raises and clears (silent, offline,
  battery, link, tamper) are committed with the message. :meth:`IngestPipeline.supervise`
  is the periodic silence check. ``technical.bridge_offline``/``bridge_offline_cleared``
  are raised once per change (the first "online" is recorded silently); while the bridge
  is offline, or the broker link is down, device silence and offline are held back.
- A device state the broker had retained (``retain`` set on delivery) never raises an
  action such as a button press; edge properties are still compared and recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
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
from gateway.discovery import AllowList, Plan, Report, plan_devices, plan_event
from gateway.ingest_state import (
    BRIDGE,
    MIGRATIONS,
    Availability,
    AvailabilityRecord,
    ReceivedRecord,
    expire_received,
    forget_received,
    load_availability,
    load_device_states,
    load_received,
    mark_acked,
    record_received,
    save_availability,
    save_device_state,
)
from gateway.inventory import (
    DeviceHealth,
    NetworkDevice,
    forget_health,
    load_health,
    load_network,
    save_network_device,
)
from gateway.outbox import EventDraft, Outbox, OutboxFull
from gateway.supervision import Outcome, Supervisor, Write
from trygg.wire.clock import Clock, system_clock
from trygg.wire.envelope import DEFAULT_PRIORITY, DeviceRef, SignedEvent

log = logging.getLogger("trygg.gateway.pipeline")

AlarmCallback = Callable[[SignedEvent], None]

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
        self.clock = clock
        self.on_alarm_committed = on_alarm_committed
        self.base_topic = base_topic
        self.report_interval = report_interval
        self.counts: Counter[str] = Counter()
        """What happened to messages: events, redelivered, bad_payload, unknown_device, …"""
        self.allow = AllowList(allowed_devices)
        self.supervisor = Supervisor(allowed_devices, self.profiles)
        self._ieee_of_name: dict[str, str] = {}
        self._edge: dict[str, dict[str, StateValue]] = {}
        self._avail: dict[str, AvailabilityRecord] = {}
        self._network: dict[str, NetworkDevice] = {}
        self._listing: list[BridgeDevice] | None = None
        """The last ``bridge/devices`` listing, judged again when the allow-list changes."""
        self._reloading = False
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
    def allowed(self) -> list[AllowedDevice]:
        return self.allow.devices

    @property
    def gateway_id(self) -> str:
        return self.outbox.gateway_id

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the ingest tables if needed and load what was remembered.

        Every device gets a fresh check-in window from now: the gateway was down, not the
        devices. Silence is held back until the first message (or :meth:`link_up`).
        """
        for name, fn in MIGRATIONS:
            await self.outbox.register_migration(name, fn)
        await self._reload(fresh=True, link_lost=True)

    async def drain(self) -> None:
        """Wait until every submitted message's commit has finished (or failed)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def forget_redeliveries(self) -> None:
        """The broker holds no session for us: no message will be resent, forget the marks.

        Called on a connection whose CONNACK says the session is new, before any message
        arrives on it; committed in its own transaction, so a later crash cannot bring the
        old marks back to match a fresh message that reuses an old packet id.
        """
        await self.drain()
        forgotten = await self.outbox.run(forget_received)
        self._received.clear()
        if forgotten:
            log.info("broker kept no session: forgot %d redelivery marks", forgotten)

    async def resync(self) -> None:
        """Drain, then reload all remembered state from the database.

        Called when a connection ends: messages the broker resends must be judged against
        what is durable, not against state a failed commit left only in memory. Device
        silence is held back until the link is up again.
        """
        await self._reload(fresh=False, link_lost=True)

    def link_up(self) -> asyncio.Future[None]:
        """The broker link is (again) subscribed: silence counts again, minus the deaf time."""
        outcome = self.supervisor.set_deaf("link", False, self.clock())
        return self._commit(outcome.drafts, outcome.writes) if outcome else self._done()

    async def _reload(self, *, fresh: bool, link_lost: bool) -> None:
        self._reloading = True
        try:
            await self._load(fresh=fresh, link_lost=link_lost)
        finally:
            self._reloading = False

    async def _load(self, *, fresh: bool, link_lost: bool) -> None:
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
            dict[str, NetworkDevice],
            dict[str, DeviceHealth],
        ]:
            mark_acked(db, marks)
            expired = expire_received(db, now)
            if expired:
                log.info("forgot %d old ingest marks", expired)
            return (
                load_device_states(db),
                load_availability(db),
                load_received(db),
                load_network(db),
                load_health(db),
            )

        self._edge, self._avail, self._received, self._network, health = await self.outbox.run(load)
        writes = self.supervisor.load(health, now, fresh=fresh).writes
        if writes:
            await self.outbox.run(lambda db: [write(db) for write in writes])
        self._next_expiry = now + EXPIRY_INTERVAL
        if link_lost:
            self.supervisor.set_deaf("link", True, now)
        bridge = self._avail.get(BRIDGE)
        if bridge is not None and bridge.observed == "offline":
            self.supervisor.set_deaf("bridge", True, now)

    async def supervise(self) -> None:
        """The periodic check: raise ``technical.device_silent`` for devices quiet too long.

        The daemon calls it every ``CHECK_PERIOD_S``; tests call it after moving the clock.
        Skipped while state is being reloaded (the next period checks).
        """
        if self._reloading:
            return
        outcome = self.supervisor.check(self.clock())
        if outcome:
            # Shielded: a daemon stopping mid-check must not cancel a commit under way.
            await asyncio.shield(self._commit(outcome.drafts, outcome.writes))

    async def update_allowed(self, devices: Sequence[AllowedDevice]) -> None:
        """A new allow-list (the installer changed ``gateway.yaml``): use it from now on.

        The last ``bridge/devices`` listing is judged again, so a device just paired is
        trusted (its check-in window starts now) and one just removed is reported as
        unknown; removed devices' supervision rows are dropped.
        """
        await self.drain()
        self.allow = AllowList(devices)
        self.supervisor.set_devices(devices)
        keep = sorted(d.friendly_name for d in devices)
        writes: list[Write] = [partial(forget_health, keep=keep)]
        drafts: list[EventDraft] = []
        if self._listing is not None:
            now = self.clock()
            drafts, more = self._apply_plan(
                plan_devices(self._network, self._listing, self.profiles, self.allow, now)
            )
            writes += more
        await self._commit(drafts, writes)

    # -- per message ----------------------------------------------------------------------

    def submit(self, message: ReceivedMessage) -> asyncio.Future[None]:
        """Handle one message; the future resolves when it may be acknowledged.

        The future fails only when the database could not take a commit: then the message
        must not be acknowledged, and the caller drops the connection and resyncs.
        """
        self.counts["received"] += 1
        try:
            if self.supervisor.deaf_link:
                # Anything arriving proves the link is up (the daemon also says so).
                self.link_up()
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
            if self._already_reported(name):
                log.debug("message from %s, which discovery reported", _subject(name))
                return self._done()
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
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad payload from %s (mid %d): %s", key, message.mid, exc.reason)
            return self._report("technical.bad_payload", key, exc.reason, device)
        # A retained state is the broker's old copy: it says nothing about the device now.
        watch = Outcome() if message.retain else self.supervisor.heard(device, payload, now)
        try:
            result = evaluate(
                profile, self._edge.get(key, {}), payload, now, retained=message.retain
            )
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad payload from %s (mid %d): %s", key, message.mid, exc.reason)
            report = self._report_draft("technical.bad_payload", key, exc.reason, device)
            drafts = ([] if report is None else [report]) + watch.drafts
            return self._commit(drafts, watch.writes) if watch or drafts else self._done()
        if result.rejected:
            # Part of the message was refused; what was valid in it is used below.
            self.counts["bad_values"] += 1
            reasons = "; ".join(r.text for r in result.rejected)
            log.warning("bad values from %s (mid %d): %s", key, message.mid, reasons)
        drafts = [self._event_draft(spec, device, profile) for spec in result.drafts]
        drafts += watch.drafts
        writes: list[Write] = list(watch.writes)
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
            # Unknown devices are reported by discovery and from their state messages;
            # availability alone says nothing about what the device is.
            return self._ignore("availability of a device that is not allow-listed", name)
        try:
            online = parse_availability(message.payload)
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad availability from %s: %s", device.friendly_name, exc.reason)
            return self._report("technical.bad_payload", device.friendly_name, exc.reason, device)
        outcome = self.supervisor.availability(device, online, self.clock())
        return self._commit(outcome.drafts, outcome.writes) if outcome else self._done()

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
            drafts.append(self._technical("technical.bridge_offline_cleared", None, now))
            log.info("Zigbee2MQTT bridge is back online")
        elif not online and before.reported != "offline":
            draft = self._technical("technical.bridge_offline", None, now)
            drafts.append(replace(draft, priority=self._bridge_priority()))
            log.warning("Zigbee2MQTT bridge is offline: device alarms are held back")
        state: Availability = "online" if online else "offline"
        writes: list[Write] = []
        record = AvailabilityRecord(state, state)
        if record != before:
            self._avail[BRIDGE] = record
            writes.append(partial(save_availability, subject=BRIDGE, record=record, now=now))
        outcome = self.supervisor.set_deaf("bridge", not online, now)
        drafts += outcome.drafts
        writes += outcome.writes
        if not drafts and not writes:
            return self._done()
        return self._commit(drafts, writes)

    def _bridge_priority(self) -> int:
        """The bridge down hides every device: as urgent as the most urgent silent device."""
        ordinary = DEFAULT_PRIORITY["technical"]
        urgencies = [
            profile.supervision.offline_priority
            for device in self.allow.devices
            if (profile := self.profiles.get(device.profile)) is not None
        ]
        return min([ordinary, *urgencies])

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
        self._listing = devices
        plan = plan_devices(self._network, devices, self.profiles, self.allow, self.clock())
        drafts, writes = self._apply_plan(plan)
        return self._commit(drafts, writes) if drafts or writes else self._done()

    def _on_bridge_event(self, message: ReceivedMessage) -> asyncio.Future[None]:
        try:
            event = parse_bridge_event(message.payload)
        except Z2mParseError as exc:
            self.counts["bad_payload"] += 1
            log.warning("bad bridge/event: %s", exc.reason)
            return self._report("technical.bad_payload", BRIDGE, exc.reason, None)
        allowed = self.allow.find(event.ieee, event.friendly_name)
        if event.type == "device_leave" and allowed is not None:
            log.warning("allow-listed device %s left the Zigbee network", allowed.friendly_name)
        elif event.type == "device_joined" and allowed is None:
            log.info("device %s joined the Zigbee network", _subject(event.ieee or "?"))
        drafts, writes = self._apply_plan(
            plan_event(self._network, event, self.allow, self.clock())
        )
        if not drafts and not writes:
            return self._ignore(f"bridge event {event.type}", BRIDGE)
        return self._commit(drafts, writes)

    def _apply_plan(self, plan: Plan) -> tuple[list[EventDraft], list[Write]]:
        """Keep discovery's rows in memory; return their writes and the reports to raise."""
        writes: list[Write] = []
        for row in plan.rows:
            self._network[row.ieee.lower()] = row
            writes.append(partial(save_network_device, device=row))
        return [self._discovery_report(report) for report in plan.reports], writes

    def _discovery_report(self, report: Report) -> EventDraft:
        row = report.device
        self.counts["reports"] += 1
        log.warning(
            "%s %s (%s): %s", report.type, row.ieee, _subject(row.friendly_name), row.reason
        )
        data: dict[str, str] = {
            "ieee": row.ieee,
            "subject": _subject(row.friendly_name),
            "status": row.status,
            "reason": row.reason[:200],
        }
        for name, value in (
            ("model", row.model),
            ("vendor", row.vendor),
            ("model_id", row.model_id),
            ("profile", row.profile),
        ):
            if value is not None:
                data[name] = _subject(value)
        technical = self._technical(report.type, report.allowed, self.clock())
        return replace(technical, data=data)

    def _already_reported(self, name: str) -> bool:
        """Whether discovery knows ``name`` as a network member it judged (or is judging)."""
        key = self._ieee_of_name.get(name, name.lower())
        row = self._network.get(key)
        return row is not None and row.status != "trusted"

    # -- helpers --------------------------------------------------------------------------

    def _match(self, name: str) -> AllowedDevice | None:
        """By friendly name, by IEEE address in the topic, or by the IEEE Z2M lists it under."""
        device = self.allow.find(None, name) or self.allow.find(name, None)
        if device is None and name in self._ieee_of_name:
            device = self.allow.find(self._ieee_of_name[name], None)
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
            device=DeviceRef(id=device.friendly_name, profile=profile.id, room=device.location),
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
            else DeviceRef(id=device.friendly_name, profile=device.profile, room=device.location),
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
        also: Callable[[sqlite_utils.Database], None],
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
            self.supervisor.revert(drafts)
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
