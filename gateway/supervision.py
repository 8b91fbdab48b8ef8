"""Supervision: technical alarms for allow-listed devices, each raised once and cleared once.

Per device, from its profile's ``supervision`` block (ARCHITECTURE.md §5, peers.md lesson 7):

==============  ===============================================  ==========================
condition       raised when                                      cleared when
==============  ===============================================  ==========================
``silent``      no message for ``offline_after`` (2-3 check-in   the device speaks again
                intervals; ``liveness: reports`` devices only)
``offline``     Zigbee2MQTT's availability says offline          it says online
``battery_low`` ``battery_low`` true, or battery at or below     the flag is false and the
                ``battery_low_percent``                          battery is above the
                                                                 threshold + 5 points
``link_poor``   link quality below ``linkquality_poor_below``    3 good reports in a row
                in 3 reports in a row
``tamper``      the profile's tamper property is true            it is false
==============  ===============================================  ==========================

Events are ``technical.device_silent``, ``technical.device_offline``, ``technical.battery_low``,
``technical.link_poor``, ``technical.tamper`` and each one's ``<type>_cleared``. Silent and
offline carry the profile's ``offline_priority`` (2 or less opens an alarm at the centre; a
cleared event resolves it there); the others and every cleared event are priority 3.

The gateway can only judge silence over time it could hear: while the Zigbee2MQTT bridge is
offline or the broker link is down, silence and offline are held back, and when hearing
resumes every device's window is moved on by the deaf time. After the gateway itself was
down, every device gets a fresh window from the start (the devices were not silent; the
gateway was). What was raised is persisted (``device_supervision``) in the same transaction
as the event, so a restart never raises a condition twice and never forgets to clear one.

The transitions (:func:`on_report`, :func:`on_availability`, :func:`on_silence`) are pure;
:class:`Supervisor` holds the current state for the pipeline, which commits its drafts and
writes; :func:`run_supervision` is the daemon's periodic check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Literal

import sqlite_utils

from firmware_profiles.rules import RejectReason, read_value, signable_decimal
from firmware_profiles.schema import AnyReading, Profile
from gateway.config import AllowedDevice
from gateway.inventory import Condition, DeviceHealth, forget_health, save_health
from gateway.outbox import EventDraft
from trygg.wire.clock import format_ts
from trygg.wire.envelope import DEFAULT_PRIORITY, DeviceRef

log = logging.getLogger("trygg.gateway.supervision")

EVENT_TYPES: dict[Condition, str] = {
    "silent": "technical.device_silent",
    "offline": "technical.device_offline",
    "battery_low": "technical.battery_low",
    "link_poor": "technical.link_poor",
    "tamper": "technical.tamper",
}
CLEARED = "_cleared"
LINK_STREAK = 3
"""Reports in a row on one side of the link limit before the condition changes."""
BATTERY_HYSTERESIS = Decimal(5)
"""Percentage points above the threshold a battery must reach to clear (no flapping)."""
CHECK_PERIOD_S = 30.0
PERSIST_EVERY = timedelta(minutes=1)
"""Last heard and link quality are written at most this often per device (when nothing
else changed): they are for the installer's listing; a restart starts a fresh window."""

MEMO_SIZE = 2048
"""Remembered raw values per profile (link quality alone has 256)."""
_MISSING = object()

Deafness = Literal["bridge", "link"]
Write = Callable[[sqlite_utils.Database], object]
Data = dict[str, int | bool | str]


@dataclass(frozen=True, slots=True)
class Change:
    """One condition raised (``raised``) or cleared, with the event's data."""

    condition: Condition
    raised: bool
    data: Data = field(default_factory=dict)

    @property
    def type(self) -> str:
        base = EVENT_TYPES[self.condition]
        return base if self.raised else base + CLEARED


@dataclass(slots=True)
class Outcome:
    """What the pipeline commits for supervision: events and state writes, together."""

    drafts: list[EventDraft] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)

    def __iadd__(self, other: Outcome) -> Outcome:
        self.drafts += other.drafts
        self.writes += other.writes
        return self

    def __bool__(self) -> bool:
        return bool(self.drafts or self.writes)


# --- the pure state machine ------------------------------------------------------------------


def _flip(
    raised: set[Condition],
    condition: Condition,
    up: bool,
    data: Data | Callable[[], Data],
    out: list[Change],
) -> None:
    """Raise or clear ``condition`` if that changes anything (once each way); ``data`` may
    be a function, called only then (this runs for every message)."""
    if up == (condition in raised):
        return
    if up:
        raised.add(condition)
    else:
        raised.discard(condition)
    out.append(Change(condition, up, data() if callable(data) else data))


@dataclass(frozen=True, slots=True)
class Signs:
    """One message's health fields, each checked against the profile's reading (a bad
    value is left out, as ``firmware_profiles.rules.device_health`` leaves it out)."""

    battery: Decimal | None = None
    battery_flag: bool | None = None
    """The device's own ``battery_low_property``, where the profile names one."""
    linkquality: int | None = None
    tamper: bool | None = None


class SignReader:
    """Reads :class:`Signs` for one profile.

    The same judgement as ``device_health`` (a test holds them equal on every recorded
    payload), but it looks at the few health fields only: supervision sees every message,
    and going through all of a profile's readings a second time halved ingest throughput.
    """

    def __init__(self, profile: Profile) -> None:
        supervision = profile.supervision
        self.profile = profile
        self.threshold = supervision.battery_low_percent
        self.poor_below = supervision.linkquality_poor_below
        self.battery = profile.reading("battery")
        self.linkquality = profile.reading("linkquality")
        self.flag = _named_reading(profile, supervision.battery_low_property)
        self.tamper = _named_reading(profile, supervision.tamper_property)
        self._memo: dict[tuple[str, type, object], object] = {}

    def read(self, message: Mapping[str, Any]) -> Signs:
        battery = self._value("battery", self.battery, message.get("battery"))
        linkquality = self._value("linkquality", self.linkquality, message.get("linkquality"))
        flag = tamper = None
        if self.flag is not None:
            flag = self._value(self.flag[0], self.flag[1], message.get(self.flag[0]))
        if self.tamper is not None:
            tamper = self._value(self.tamper[0], self.tamper[1], message.get(self.tamper[0]))
        return Signs(
            battery=battery if isinstance(battery, Decimal) else None,
            battery_flag=flag if isinstance(flag, bool) else None,
            linkquality=int(linkquality) if isinstance(linkquality, Decimal) else None,
            tamper=tamper if isinstance(tamper, bool) else None,
        )

    def _value(self, name: str, reading: AnyReading | None, raw: object) -> object:
        """``read_value``, remembered per raw value: a device repeats the same few values
        (battery, link quality) in every report, and exact decimals are slow to make."""
        if reading is None or raw is None:
            return None
        if not isinstance(raw, bool | int | str):
            return _value(reading, raw)
        key = (name, type(raw), raw)
        known = self._memo.get(key, _MISSING)
        if known is _MISSING:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            known = self._memo[key] = _value(reading, raw)
        return known

    def battery_low(self, signs: Signs) -> bool | None:
        """Low by the device's flag or by the percentage; ``None`` when neither is known."""
        lows: list[bool] = []
        if signs.battery_flag is not None:
            lows.append(signs.battery_flag)
        if self.threshold is not None and signs.battery is not None:
            lows.append(signs.battery <= self.threshold)
        return any(lows) if lows else None

    def link_poor(self, signs: Signs) -> bool | None:
        return None if signs.linkquality is None else signs.linkquality < self.poor_below


def _named_reading(profile: Profile, name: str | None) -> tuple[str, AnyReading] | None:
    reading = None if name is None else profile.reading(name)
    return None if name is None or reading is None else (name, reading)


def _value(reading: AnyReading | None, raw: object) -> object:
    if reading is None or raw is None:
        return None
    value = read_value(reading, raw)
    return None if isinstance(value, RejectReason) else value


def _battery(
    reader: SignReader, signs: Signs, low: bool | None, raised: set[Condition], out: list[Change]
) -> None:
    """Raised by any sign of a low battery; cleared only when every sign the profile has
    says it is fine (a report without the device's own flag cannot clear it)."""
    if low is None or low == ("battery_low" in raised):
        return

    def data() -> Data:
        facts: Data = {"battery_low": low}
        if signs.battery is not None:
            facts["battery"] = signable_decimal(signs.battery)
        return facts

    if low:
        _flip(raised, "battery_low", True, data, out)
        return
    if reader.flag is not None and signs.battery_flag is None:
        return
    threshold, percent = reader.threshold, signs.battery
    if threshold is None or percent is None or percent > threshold + BATTERY_HYSTERESIS:
        _flip(raised, "battery_low", False, data, out)


def _link(
    state: DeviceHealth, reader: SignReader, signs: Signs, raised: set[Condition], out: list[Change]
) -> tuple[int, int]:
    poor = reader.link_poor(signs)
    if signs.linkquality is None or poor is None:
        return state.link_bad, state.link_good
    bad, good = (state.link_bad + 1, 0) if poor else (0, state.link_good + 1)
    data: Data = {"linkquality": signs.linkquality, "poor_below": reader.poor_below}
    if bad >= LINK_STREAK:
        _flip(raised, "link_poor", True, data, out)
    elif good >= LINK_STREAK:
        _flip(raised, "link_poor", False, data, out)
    # Cap the streaks: only "at least LINK_STREAK" matters, and rows stay small.
    return min(bad, LINK_STREAK), min(good, LINK_STREAK)


def on_report(
    state: DeviceHealth, reader: SignReader, message: Mapping[str, Any], now: datetime
) -> tuple[DeviceHealth, list[Change]]:
    """A live message from the device: it was heard now; judge battery, link and tamper.

    Bad health values are left out and change nothing.
    """
    signs = reader.read(message)
    low = reader.battery_low(signs)
    raised = set(state.raised)
    out: list[Change] = []
    if "silent" in raised:
        last = None if state.last_heard_at is None else format_ts(state.last_heard_at)
        _flip(raised, "silent", False, {} if last is None else {"last_heard_at": last}, out)
    _battery(reader, signs, low, raised, out)
    link_bad, link_good = _link(state, reader, signs, raised, out)
    if signs.tamper is not None:
        _flip(raised, "tamper", signs.tamper, {"tamper": signs.tamper}, out)
    new = DeviceHealth(
        device=state.device,
        updated_at=state.updated_at,
        ieee=state.ieee,
        profile=state.profile,
        room=state.room,
        last_heard_at=now,
        availability=state.availability,
        battery=state.battery if signs.battery is None else signs.battery,
        battery_low=state.battery_low if low is None else low,
        linkquality=state.linkquality if signs.linkquality is None else signs.linkquality,
        link_bad=link_bad,
        link_good=link_good,
        tamper=state.tamper if signs.tamper is None else signs.tamper,
        raised=frozenset(raised) if out else state.raised,
    )
    return new, out


def on_availability(
    state: DeviceHealth, online: bool, *, hold: bool
) -> tuple[DeviceHealth, list[Change]]:
    """Zigbee2MQTT's availability for the device; an offline is held back while ``hold``.

    The first report of online is recorded silently; a held-back offline stays observed
    and is raised by :func:`release_held` when hearing resumes, if it still holds.
    """
    raised = set(state.raised)
    out: list[Change] = []
    data: Data = {"source": "zigbee2mqtt"}
    if online or not hold:
        _flip(raised, "offline", not online, data, out)
    new = replace(state, availability="online" if online else "offline", raised=frozenset(raised))
    return new, out


def release_held(state: DeviceHealth) -> tuple[DeviceHealth, list[Change]]:
    """Hearing resumed: raise an offline that was observed while held back."""
    if state.availability != "offline":
        return state, []
    return on_availability(state, False, hold=False)


def on_silence(
    state: DeviceHealth, profile: Profile, since: datetime, now: datetime, *, hold: bool
) -> tuple[DeviceHealth, list[Change]]:
    """Raise ``silent`` when nothing was heard for ``offline_after`` counted from ``since``.

    ``since`` is where the current window starts (gateway start, moved on by deaf time);
    the last message counts when it is later. Only devices whose liveness is their own
    reports are judged: mains routers are judged by Zigbee2MQTT's availability.
    """
    supervision = profile.supervision
    if hold or supervision.liveness != "reports" or "silent" in state.raised:
        return state, []
    start = since if state.last_heard_at is None else max(since, state.last_heard_at)
    if now - start < supervision.offline_after:
        return state, []
    data: Data = {
        "silent_s": int((now - start).total_seconds()),
        "offline_after_s": int(supervision.offline_after.total_seconds()),
    }
    if state.last_heard_at is not None:
        data["last_heard_at"] = format_ts(state.last_heard_at)
    return replace(state, raised=state.raised | {"silent"}), [Change("silent", True, data)]


def priority(change: Change, profile: Profile) -> int:
    """Silent and offline take the profile's ``offline_priority``; all else, and every
    clearing, is an ordinary technical event (it never opens an alarm by itself)."""
    ordinary = DEFAULT_PRIORITY["technical"]
    if change.condition in ("silent", "offline"):
        urgent = profile.supervision.offline_priority
        return urgent if change.raised else max(urgent, ordinary)
    return ordinary


# --- the holder the pipeline drives ----------------------------------------------------------


def _durable(state: DeviceHealth) -> tuple[object, ...]:
    """The fields whose change is written at once (the rest are written every minute)."""
    return (
        state.raised,
        state.availability,
        state.battery,
        state.battery_low,
        state.tamper,
        state.ieee,
        state.profile,
        state.room,
    )


class Supervisor:
    """Current supervision state of every allow-listed device; see the module docstring.

    Every method returns an :class:`Outcome` for the caller to commit in one transaction;
    the in-memory state advances at once (the pipeline's arrival-order model). After a
    failed commit the caller reloads it with :meth:`load`; a commit the outbox refused is
    undone with :meth:`revert`. Use it from the event loop only.
    """

    def __init__(
        self,
        devices: Sequence[AllowedDevice],
        profiles: Mapping[str, Profile],
        *,
        persist_every: timedelta = PERSIST_EVERY,
    ) -> None:
        self.profiles = dict(profiles)
        self.persist_every = persist_every
        self._devices: dict[str, AllowedDevice] = {}
        self._state: dict[str, DeviceHealth] = {}
        self._saved: dict[str, tuple[tuple[object, ...], datetime]] = {}
        self._since: dict[str, datetime] = {}
        self._readers: dict[str, SignReader] = {}
        self._deaf: set[Deafness] = set()
        self._deaf_since: datetime | None = None
        self.set_devices(devices)

    # -- lifecycle ----------------------------------------------------------------------------

    def set_devices(self, devices: Sequence[AllowedDevice]) -> None:
        """A new allow-list: new devices start a fresh window at their first check."""
        self._devices = {d.friendly_name: d for d in devices}
        for name in list(self._state):
            if name not in self._devices:
                del self._state[name]
                self._since.pop(name, None)
                self._saved.pop(name, None)

    def load(self, stored: Mapping[str, DeviceHealth], now: datetime, *, fresh: bool) -> Outcome:
        """Take the persisted state; ``fresh`` (gateway start) opens every device's window.

        On a reload (not fresh) windows are kept and the later of the remembered and the
        stored last-heard time wins: a message whose commit failed was still heard.
        Returns writes that add rows for new devices and drop rows of removed ones.
        """
        outcome = Outcome()
        for name, device in self._devices.items():
            row = stored.get(name) or DeviceHealth(device=name, updated_at=now)
            memory = self._state.get(name)
            heard = None if memory is None else memory.last_heard_at
            if heard is not None and (row.last_heard_at is None or heard > row.last_heard_at):
                row = replace(row, last_heard_at=heard)
            row = replace(row, ieee=device.ieee, profile=device.profile, room=device.room)
            self._state[name] = row
            stored_row = stored.get(name)
            if stored_row is None or _durable(stored_row) != _durable(row):
                outcome.writes.append(self._save(row, now))
            else:
                self._saved[name] = (_durable(row), stored_row.updated_at)
            if fresh or name not in self._since:
                self._since[name] = now
        if set(stored) - set(self._devices):
            outcome.writes.append(partial(forget_health, keep=sorted(self._devices)))
        return outcome

    def state(self, name: str) -> DeviceHealth | None:
        return self._state.get(name)

    @property
    def deaf(self) -> bool:
        """The bridge is offline or the broker link is down: silence means nothing now."""
        return bool(self._deaf)

    @property
    def deaf_link(self) -> bool:
        return "link" in self._deaf

    # -- inputs -------------------------------------------------------------------------------

    def heard(self, device: AllowedDevice, message: Mapping[str, Any], now: datetime) -> Outcome:
        """A live (not retained) state message from an allow-listed device."""
        profile = self.profiles.get(device.profile)
        if profile is None:
            return Outcome()
        reader = self._readers.get(profile.id)
        if reader is None or reader.profile is not profile:
            reader = self._readers[profile.id] = SignReader(profile)
        new, changes = on_report(self._current(device, now), reader, message, now)
        return self._apply(device, profile, new, changes, now, report=True)

    def availability(self, device: AllowedDevice, online: bool, now: datetime) -> Outcome:
        profile = self.profiles.get(device.profile)
        if profile is None:
            return Outcome()
        new, changes = on_availability(self._current(device, now), online, hold=self.deaf)
        if not online and not changes and self.deaf and "offline" not in new.raised:
            log.info("offline of %s held back: the bridge or broker is down", device.friendly_name)
        return self._apply(device, profile, new, changes, now, report=True)

    def set_deaf(self, why: Deafness, deaf: bool, now: datetime) -> Outcome:
        """The bridge went offline or the broker link went down (``deaf``), or came back.

        When the last reason goes away, every window moves on by the time since the first
        one began, and offlines observed meanwhile are raised if they still hold.
        """
        if deaf:
            if why not in self._deaf:
                log.info("supervision holds device alarms: %s down", why)
            if not self._deaf:
                self._deaf_since = now
            self._deaf.add(why)
            return Outcome()
        if why not in self._deaf:
            return Outcome()
        self._deaf.discard(why)
        if self._deaf or self._deaf_since is None:
            return Outcome()
        deaf_for = max(timedelta(0), now - self._deaf_since)
        self._deaf_since = None
        log.info("supervision resumes after %s without hearing devices", deaf_for)
        outcome = Outcome()
        for name, device in self._devices.items():
            state = self._current(device, now)
            start = self._since.get(name, now)
            if state.last_heard_at is not None:
                start = max(start, state.last_heard_at)
            self._since[name] = min(now, start + deaf_for)
            profile = self.profiles.get(device.profile)
            new, changes = release_held(state)
            if profile is not None and changes:
                outcome += self._apply(device, profile, new, changes, now)
        return outcome

    def check(self, now: datetime) -> Outcome:
        """The periodic check: raise ``silent`` for devices quiet too long (pure; no I/O)."""
        outcome = Outcome()
        if self.deaf:
            return outcome
        for name, device in self._devices.items():
            profile = self.profiles.get(device.profile)
            if profile is None:
                continue
            state = self._current(device, now)
            since = self._since.setdefault(name, now)
            new, changes = on_silence(state, profile, since, now, hold=False)
            if changes:
                log.warning("device %s is silent (%s)", name, profile.id)
            outcome += self._apply(device, profile, new, changes, now)
        return outcome

    def revert(self, drafts: Sequence[EventDraft]) -> None:
        """The outbox refused these events, and the state written with them: undo their
        raises and clears in memory, so the next report or check makes them again."""
        conditions = {kind: condition for condition, kind in EVENT_TYPES.items()}
        for draft in drafts:
            if draft.device is None or draft.device.id not in self._state:
                continue
            name = draft.device.id
            self._saved.pop(name, None)  # its row was not written either
            raised = draft.type in conditions
            base = draft.type if raised else draft.type.removesuffix(CLEARED)
            condition = conditions.get(base)
            if condition is None:
                continue
            state = self._state[name]
            undone = state.raised - {condition} if raised else state.raised | {condition}
            self._state[name] = replace(state, raised=undone)
            log.warning(
                "%s for %s was refused by the outbox; it will be tried again", draft.type, name
            )

    # -- helpers ------------------------------------------------------------------------------

    def _current(self, device: AllowedDevice, now: datetime) -> DeviceHealth:
        state = self._state.get(device.friendly_name)
        if state is None:
            state = DeviceHealth(
                device=device.friendly_name,
                updated_at=now,
                ieee=device.ieee,
                profile=device.profile,
                room=device.room,
            )
            self._state[device.friendly_name] = state
            self._since.setdefault(device.friendly_name, now)
        return state

    def _apply(
        self,
        device: AllowedDevice,
        profile: Profile,
        new: DeviceHealth,
        changes: list[Change],
        now: datetime,
        *,
        report: bool = False,
    ) -> Outcome:
        """Keep ``new``; write it with any change, on first sight, and (for a ``report``)
        when a durable field changed or the last write is ``persist_every`` old."""
        name = device.friendly_name
        self._state[name] = new
        outcome = Outcome(drafts=[self._draft(device, profile, c, now) for c in changes])
        saved = self._saved.get(name)
        due = saved is None or (
            report and (saved[0] != _durable(new) or now - saved[1] >= self.persist_every)
        )
        if changes or due:
            outcome.writes.append(self._save(new, now))
        for change in changes:
            log.info("%s %s", change.type, name)
        return outcome

    def _save(self, state: DeviceHealth, now: datetime) -> Write:
        row = replace(state, updated_at=now)
        self._state[state.device] = row
        self._saved[state.device] = (_durable(row), now)
        return partial(save_health, health=row)

    def _draft(
        self, device: AllowedDevice, profile: Profile, change: Change, now: datetime
    ) -> EventDraft:
        return EventDraft(
            event_class="technical",
            type=change.type,
            occurred_at=now,
            priority=priority(change, profile),
            device=DeviceRef(id=device.friendly_name, profile=profile.id, room=device.location),
            data={"condition": change.condition, **change.data},
            resident_ref=device.resident_ref,
        )


async def run_supervision(
    tick: Callable[[], Awaitable[object]], stop: asyncio.Event, *, period_s: float = CHECK_PERIOD_S
) -> None:
    """Call ``tick`` (the pipeline's supervision check) every ``period_s`` until ``stop``.

    A failing check is logged and retried at the next period: supervision must outlive
    a bad moment of the database.
    """
    while not stop.is_set():
        try:
            await tick()
        except Exception:
            log.exception("supervision check failed; retrying in %.0f s", period_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period_s)
