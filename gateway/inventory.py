"""The gateway's device inventory: what is in the Zigbee network and how each device is doing.

Two tables in the outbox's database, written by the daemon (discovery and supervision, in
the same transactions as the events they raise) and read by the installer's commands:

- ``device_inventory``: one row per Zigbee network member Zigbee2MQTT told us about
  (``bridge/devices``, ``bridge/event``), keyed by IEEE address: what it is, the profile
  its fingerprint matched or why none, whether it is allow-listed, and what was reported
  about it (``technical.unknown_device``/``unsupported_device``, once per device).
- ``device_supervision``: one row per allow-listed device, keyed by its allow-list name:
  last heard, battery, link quality, availability, tamper and the technical conditions
  raised and not yet cleared. Some fields (last heard, link quality) are written at most
  about once a minute per device, so ``last_seen_at`` may lag by that much.

:func:`read_inventory` joins them for a reader in another process, on a read-only
connection (``gateway.outbox.open_read_only``) while the daemon writes: WAL allows it.
The write helpers run in the outbox's writer thread and open no transaction themselves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, TypeVar, get_args

import sqlite_utils

from gateway.outbox import Migration
from trygg.wire.clock import format_ts, parse_ts

Availability = Literal["online", "offline"]
Interview = Literal["pending", "started", "successful", "failed"]
MatchKind = Literal[
    "matched", "no_profile", "ambiguous", "firmware_outside", "unsupported", "pending"
]
"""What the device's fingerprint says, whatever the allow-list says:

- ``matched``: one profile fits (``profile`` names it) and the firmware is not outside it;
- ``no_profile``: Zigbee2MQTT knows the model, no Trygg profile does;
- ``ambiguous``: several profiles fit and the allow-list does not pick one of them;
- ``firmware_outside``: the profile fits but the firmware is outside its verified range;
- ``unsupported``: Zigbee2MQTT itself does not support the device, or its interview failed;
- ``pending``: the interview has not finished, so the model is not known yet.
"""
Status = Literal["trusted", "unknown", "unsupported", "mismatch", "pending", "left"]
"""What the gateway does with the device:

- ``trusted``: allow-listed, and the fingerprint matches its allow-listed profile;
- ``unknown``: in the network but not allow-listed (reported as ``technical.unknown_device``);
- ``unsupported``: cannot be used: Zigbee2MQTT does not support it, or it is allow-listed but
  no profile fits or its firmware is outside the range (``technical.unsupported_device``);
- ``mismatch``: allow-listed as one profile, but the fingerprint is another model
  (``technical.unsupported_device``);
- ``pending``: joined, interview not finished; judged when it is;
- ``left``: no longer in the Zigbee network.
"""
Condition = Literal["silent", "offline", "battery_low", "link_poor", "tamper"]
CONDITIONS: tuple[Condition, ...] = get_args(Condition)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Stands in for an unreadable stored time (never expected; keeps a reader from failing)."""

S = TypeVar("S", bound=str)


def _create_inventory_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE device_inventory ("
        " ieee TEXT PRIMARY KEY,"
        " friendly_name TEXT NOT NULL,"
        " type TEXT, model TEXT, vendor TEXT, model_id TEXT, manufacturer TEXT,"
        " software_build_id TEXT, date_code TEXT, power_source TEXT,"
        " supported INTEGER,"
        " interview TEXT NOT NULL"
        "  CHECK (interview IN ('pending', 'started', 'successful', 'failed')),"
        " in_network INTEGER NOT NULL,"
        " match TEXT NOT NULL,"
        " profile TEXT,"
        " status TEXT NOT NULL,"
        " reason TEXT NOT NULL,"
        " allowed_name TEXT, allowed_profile TEXT,"
        " reported TEXT,"
        " first_seen_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE device_supervision ("
        " device TEXT PRIMARY KEY,"
        " ieee TEXT, profile TEXT, room TEXT,"
        " last_heard_at TEXT,"
        " availability TEXT CHECK (availability IN ('online', 'offline')),"
        " battery TEXT, battery_low INTEGER, linkquality INTEGER,"
        " link_bad INTEGER NOT NULL DEFAULT 0, link_good INTEGER NOT NULL DEFAULT 0,"
        " tamper INTEGER,"
        " raised TEXT NOT NULL DEFAULT '',"
        " updated_at TEXT NOT NULL)"
    )
    # Device availability used to live in ingest_availability (ingest.v1): carry over what
    # was observed and raised, so an upgrade neither repeats nor forgets an offline alarm.
    db.execute(
        "INSERT INTO device_supervision (device, availability, raised, updated_at)"
        " SELECT substr(subject, 8), observed,"
        " CASE WHEN reported = 'offline' THEN 'offline' ELSE '' END, updated_at"
        " FROM ingest_availability WHERE subject LIKE 'device:%'"
    )
    db.execute("DELETE FROM ingest_availability WHERE subject LIKE 'device:%'")


MIGRATIONS: tuple[Migration, ...] = (("inventory.v1", _create_inventory_v1),)
"""Run after ``ingest.v1`` (``gateway.ingest_state.MIGRATIONS`` includes these)."""


# --- rows as the daemon keeps them ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkDevice:
    """One ``device_inventory`` row: a Zigbee network member and the verdict on it."""

    ieee: str
    friendly_name: str
    interview: Interview
    in_network: bool
    match: MatchKind
    status: Status
    reason: str
    first_seen_at: datetime
    updated_at: datetime
    type: str | None = None
    model: str | None = None
    vendor: str | None = None
    model_id: str | None = None
    manufacturer: str | None = None
    software_build_id: str | None = None
    date_code: str | None = None
    power_source: str | None = None
    supported: bool | None = None
    profile: str | None = None
    allowed_name: str | None = None
    allowed_profile: str | None = None
    reported: str | None = None
    """The report event type last raised for this device, if any (once per device)."""

    def same_as(self, other: NetworkDevice | None) -> bool:
        """Equal apart from ``updated_at``: nothing worth a write changed."""
        return other is not None and replace(other, updated_at=self.updated_at) == self


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One ``device_supervision`` row: what supervision remembers of an allow-listed device."""

    device: str
    updated_at: datetime
    ieee: str | None = None
    profile: str | None = None
    room: str | None = None
    last_heard_at: datetime | None = None
    availability: Availability | None = None
    battery: Decimal | None = None
    battery_low: bool | None = None
    linkquality: int | None = None
    link_bad: int = 0
    link_good: int = 0
    tamper: bool | None = None
    raised: frozenset[Condition] = frozenset()


def _ts(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def _opt_ts(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_ts(value)
    except ValueError:
        return None


def _opt_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_decimal(value: object) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _conditions(text: object) -> frozenset[Condition]:
    if not isinstance(text, str):
        return frozenset()
    return frozenset(c for c in CONDITIONS if c in text.split(","))


def _pick(value: object, allowed: tuple[S, ...], default: S) -> S:
    for option in allowed:
        if value == option:
            return option
    return default


def _availability(value: object) -> Availability | None:
    if value == "online":
        return "online"
    if value == "offline":
        return "offline"
    return None


_SELECT_INVENTORY = (
    "SELECT ieee, friendly_name, type, model, vendor, model_id, manufacturer,"
    " software_build_id, date_code, power_source, supported, interview, in_network,"
    " match, profile, status, reason, allowed_name, allowed_profile, reported,"
    " first_seen_at, updated_at FROM device_inventory"
)
_INSERT_INVENTORY = (
    "INSERT OR REPLACE INTO device_inventory (ieee, friendly_name, type, model,"
    " vendor, model_id, manufacturer, software_build_id, date_code, power_source,"
    " supported, interview, in_network, match, profile, status, reason,"
    " allowed_name, allowed_profile, reported, first_seen_at, updated_at) VALUES (?,"
    " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_HEALTH = (
    "SELECT device, ieee, profile, room, last_heard_at, availability, battery,"
    " battery_low, linkquality, link_bad, link_good, tamper, raised, updated_at FROM"
    " device_supervision"
)
_INSERT_HEALTH = (
    "INSERT OR REPLACE INTO device_supervision (device, ieee, profile, room,"
    " last_heard_at, availability, battery, battery_low, linkquality, link_bad,"
    " link_good, tamper, raised, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?, ?, ?, ?)"
)


def _network_device(row: sqlite3.Row | tuple[object, ...]) -> NetworkDevice:
    (
        ieee, name, type_, model, vendor, model_id, manufacturer, build, date_code, power,
        supported, interview, in_network, match, profile, status, reason, allowed_name,
        allowed_profile, reported, first_seen, updated,
    ) = tuple(row)  # fmt: skip
    return NetworkDevice(
        ieee=str(ieee),
        friendly_name=str(name),
        type=_str(type_),
        model=_str(model),
        vendor=_str(vendor),
        model_id=_str(model_id),
        manufacturer=_str(manufacturer),
        software_build_id=_str(build),
        date_code=_str(date_code),
        power_source=_str(power),
        supported=_opt_bool(supported),
        interview=_pick(interview, get_args(Interview), "pending"),
        in_network=bool(in_network),
        match=_pick(match, get_args(MatchKind), "pending"),
        profile=_str(profile),
        status=_pick(status, get_args(Status), "pending"),
        reason=str(reason),
        allowed_name=_str(allowed_name),
        allowed_profile=_str(allowed_profile),
        reported=_str(reported),
        first_seen_at=_opt_ts(first_seen) or EPOCH,
        updated_at=_opt_ts(updated) or EPOCH,
    )


def _device_health(row: sqlite3.Row | tuple[object, ...]) -> DeviceHealth:
    (
        device, ieee, profile, room, last_heard, availability, battery, battery_low,
        linkquality, link_bad, link_good, tamper, raised, updated,
    ) = tuple(row)  # fmt: skip
    return DeviceHealth(
        device=str(device),
        ieee=_str(ieee),
        profile=_str(profile),
        room=_str(room),
        last_heard_at=_opt_ts(last_heard),
        availability=_availability(availability),
        battery=_opt_decimal(battery),
        battery_low=_opt_bool(battery_low),
        linkquality=_opt_int(linkquality),
        link_bad=_opt_int(link_bad) or 0,
        link_good=_opt_int(link_good) or 0,
        tamper=_opt_bool(tamper),
        raised=_conditions(raised),
        updated_at=_opt_ts(updated) or EPOCH,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- the daemon's reads and writes (inside Outbox.run or a commit's ``also``) ----------------


def load_network(db: sqlite_utils.Database) -> dict[str, NetworkDevice]:
    """Every ``device_inventory`` row, by lower-case IEEE address."""
    rows = db.execute(_SELECT_INVENTORY).fetchall()
    return {str(row[0]).lower(): _network_device(row) for row in rows}


def save_network_device(db: sqlite_utils.Database, device: NetworkDevice) -> None:
    values = (
        device.ieee.lower(),
        device.friendly_name,
        device.type,
        device.model,
        device.vendor,
        device.model_id,
        device.manufacturer,
        device.software_build_id,
        device.date_code,
        device.power_source,
        None if device.supported is None else int(device.supported),
        device.interview,
        int(device.in_network),
        device.match,
        device.profile,
        device.status,
        device.reason,
        device.allowed_name,
        device.allowed_profile,
        device.reported,
        format_ts(device.first_seen_at),
        format_ts(device.updated_at),
    )
    db.execute(_INSERT_INVENTORY, values)


def load_health(db: sqlite_utils.Database) -> dict[str, DeviceHealth]:
    """Every ``device_supervision`` row, by allow-list name."""
    rows = db.execute(_SELECT_HEALTH).fetchall()
    return {str(row[0]): _device_health(row) for row in rows}


def save_health(db: sqlite_utils.Database, health: DeviceHealth) -> None:
    values = (
        health.device,
        health.ieee,
        health.profile,
        health.room,
        _ts(health.last_heard_at),
        health.availability,
        None if health.battery is None else str(health.battery),
        None if health.battery_low is None else int(health.battery_low),
        health.linkquality,
        health.link_bad,
        health.link_good,
        None if health.tamper is None else int(health.tamper),
        ",".join(sorted(health.raised)),
        format_ts(health.updated_at),
    )
    db.execute(_INSERT_HEALTH, values)


def forget_health(db: sqlite_utils.Database, keep: Iterable[str]) -> int:
    """Drop rows of devices no longer allow-listed; return how many."""
    kept = set(keep)
    stored = [str(row[0]) for row in db.execute("SELECT device FROM device_supervision")]
    gone = [(name,) for name in stored if name not in kept]
    db.conn.executemany("DELETE FROM device_supervision WHERE device = ?", gone)
    return len(gone)


# --- the installer's read API ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device as the installer sees it: network facts, verdict and health.

    A network member has ``ieee`` and the discovery fields; an allow-listed device the
    network has not listed yet has only ``allowed_name`` and its health (``status`` is
    then ``pending`` and ``in_network`` false). Health fields are ``None`` for devices
    that are not allow-listed: their messages are never read.
    """

    ieee: str | None
    friendly_name: str
    status: Status
    match: MatchKind
    reason: str
    profile: str | None
    """The profile the fingerprint matched (``None`` unless ``match == "matched"``)."""
    allowed_name: str | None
    allowed_profile: str | None
    in_network: bool
    interview: Interview
    type: str | None = None
    model: str | None = None
    vendor: str | None = None
    model_id: str | None = None
    manufacturer: str | None = None
    software_build_id: str | None = None
    date_code: str | None = None
    power_source: str | None = None
    supported: bool | None = None
    reported: str | None = None
    first_seen_at: datetime | None = None
    updated_at: datetime | None = None
    room: str | None = None
    last_seen_at: datetime | None = None
    availability: Availability | None = None
    battery: Decimal | None = None
    battery_low: bool | None = None
    linkquality: int | None = None
    tamper: bool | None = None
    conditions: frozenset[Condition] = frozenset()
    """Technical conditions raised and not yet cleared (silent, offline, battery_low, ...)."""


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _record(network: NetworkDevice | None, health: DeviceHealth | None) -> DeviceRecord:
    if network is None:
        if health is None:
            raise ValueError("a record needs a network row or a health row")
        base = DeviceRecord(
            ieee=health.ieee,
            friendly_name=health.device,
            status="pending",
            match="pending",
            reason="allow-listed; Zigbee2MQTT has not listed it yet",
            profile=None,
            allowed_name=health.device,
            allowed_profile=health.profile,
            in_network=False,
            interview="pending",
        )
    else:
        base = DeviceRecord(
            ieee=network.ieee,
            friendly_name=network.friendly_name,
            status=network.status,
            match=network.match,
            reason=network.reason,
            profile=network.profile,
            allowed_name=network.allowed_name,
            allowed_profile=network.allowed_profile,
            in_network=network.in_network,
            interview=network.interview,
            type=network.type,
            model=network.model,
            vendor=network.vendor,
            model_id=network.model_id,
            manufacturer=network.manufacturer,
            software_build_id=network.software_build_id,
            date_code=network.date_code,
            power_source=network.power_source,
            supported=network.supported,
            reported=network.reported,
            first_seen_at=network.first_seen_at,
            updated_at=network.updated_at,
        )
    if health is None:
        return base
    return replace(
        base,
        room=health.room,
        last_seen_at=health.last_heard_at,
        availability=health.availability,
        battery=health.battery,
        battery_low=health.battery_low,
        linkquality=health.linkquality,
        tamper=health.tamper,
        conditions=health.raised,
    )


def combine(
    network: Mapping[str, NetworkDevice], health: Mapping[str, DeviceHealth]
) -> list[DeviceRecord]:
    """Join network rows and health rows (pure): by allow-list name, else by IEEE address."""
    by_ieee = {h.ieee.lower(): h for h in health.values() if h.ieee}
    used: set[str] = set()
    records: list[DeviceRecord] = []
    for device in sorted(network.values(), key=lambda d: (d.friendly_name, d.ieee)):
        found = health.get(device.allowed_name or "") if device.allowed_name else None
        if found is None and device.allowed_name is not None:
            found = by_ieee.get(device.ieee.lower())
        if found is not None:
            used.add(found.device)
        records.append(_record(device, found))
    for name in sorted(set(health) - used):
        records.append(_record(None, health[name]))
    return records


def read_inventory(db: sqlite3.Connection | sqlite_utils.Database) -> list[DeviceRecord]:
    """Every known device, network members first (by name), then allow-listed ones not seen.

    Takes the daemon's database or a read-only connection to it; all reads share one
    transaction, so a concurrent discovery commit is seen whole or not at all. A database
    the daemon has not yet migrated has no inventory: the answer is then empty.
    """
    conn = db.conn if isinstance(db, sqlite_utils.Database) else db
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        if not _table_exists(conn, "device_inventory"):
            return []
        network_rows = conn.execute(_SELECT_INVENTORY)
        network = {str(r[0]).lower(): _network_device(r) for r in network_rows.fetchall()}
        health_rows = conn.execute(_SELECT_HEALTH)
        health = {str(r[0]): _device_health(r) for r in health_rows.fetchall()}
    finally:
        if own:
            conn.execute("COMMIT")
    return combine(network, health)
