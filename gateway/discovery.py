"""Discovery: match Zigbee network members to profiles and decide what to trust (pure).

Zigbee2MQTT lists the network on ``bridge/devices`` (retained, republished on every change)
and announces joins, interviews and leaves on ``bridge/event``. For each member this module
decides, without I/O:

- which profile its fingerprint matches (``definition.model``/vendor, else ``model_id`` and
  manufacturer name) and whether its firmware is inside the profile's verified range;
- what the gateway does with it (``gateway.inventory.Status``): a device is trusted only
  when the installer allow-listed it *and* its fingerprint matches the allow-listed profile;
- what to report to the installer: ``technical.unsupported_device`` when Zigbee2MQTT cannot
  support it or an allow-listed device is not what it was paired as, and
  ``technical.unknown_device`` when it is not allow-listed. Each device is reported once
  (``NetworkDevice.reported`` remembers it); a later, different verdict reports again.

The caller (``gateway.pipeline``) keeps the previous rows, writes the changed ones and
commits the reports in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from drivers.mqtt.zigbee2mqtt import BridgeDevice, BridgeEvent
from firmware_profiles.schema import Profile, profiles_matching
from gateway.config import AllowedDevice
from gateway.inventory import Interview, MatchKind, NetworkDevice, Status

UNKNOWN_DEVICE = "technical.unknown_device"
UNSUPPORTED_DEVICE = "technical.unsupported_device"

FAILED = "Zigbee2MQTT could not interview the device"

REPORTS: dict[Status, str] = {
    "unknown": UNKNOWN_DEVICE,
    "unsupported": UNSUPPORTED_DEVICE,
    "mismatch": UNSUPPORTED_DEVICE,
}
"""The report each status raises; trusted, pending and left devices raise none."""


@dataclass(frozen=True, slots=True)
class Match:
    kind: MatchKind
    profile: str | None
    detail: str
    """What the fingerprint said, as a phrase for the installer (no payload contents)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    match: Match
    status: Status
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    """A device to report to the installer now: the event type and the row it is about."""

    type: str
    device: NetworkDevice
    allowed: AllowedDevice | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a discovery message changes: rows to write and reports to raise with them."""

    rows: list[NetworkDevice]
    reports: list[Report]


class AllowList:
    """The installer's allow-list, looked up by IEEE address first, then by name."""

    def __init__(self, devices: Sequence[AllowedDevice]) -> None:
        self.devices = list(devices)
        self._by_ieee = {d.ieee.lower(): d for d in self.devices if d.ieee}
        self._by_name = {d.friendly_name: d for d in self.devices}

    def find(self, ieee: str | None, name: str | None) -> AllowedDevice | None:
        device = self._by_ieee.get(ieee.lower()) if ieee else None
        if device is None and name is not None:
            device = self._by_name.get(name)
            # A name match whose configured IEEE is another device's is not this device.
            if device is not None and device.ieee and ieee and device.ieee.lower() != ieee.lower():
                return None
        return device


def _label(entry: BridgeDevice) -> str:
    if entry.model is not None:
        return " ".join(part for part in (entry.vendor, entry.model) if part)
    parts = [p for p in (entry.model_id, entry.manufacturer) if p]
    return f"model id {'/'.join(parts)}" if parts else "a device without a model id"


def match_profile(
    entry: BridgeDevice, profiles: Mapping[str, Profile], preferred: str | None = None
) -> Match:
    """The profile a ``bridge/devices`` entry's fingerprint fits, and its firmware verdict.

    ``preferred`` (the allow-listed profile) settles a fingerprint several profiles fit.
    """
    label = _label(entry)
    if not entry.interview_completed or entry.interviewing:
        return Match("pending", None, "its interview has not finished")
    if not entry.supported or entry.model is None:
        return Match("unsupported", None, f"Zigbee2MQTT does not support {label}")
    fits = profiles_matching(
        profiles.values(),
        model=entry.model,
        vendor=entry.vendor,
        model_id=entry.model_id,
        manufacturer=entry.manufacturer,
    )
    if not fits:
        return Match("no_profile", None, f"no Trygg profile for {label}")
    chosen = [p for p in fits if p.id == preferred] or fits
    if len(chosen) > 1:
        ids = ", ".join(sorted(p.id for p in chosen))
        return Match("ambiguous", None, f"{label} fits several profiles ({ids})")
    profile = chosen[0]
    firmware = profile.firmware
    if firmware is not None:
        verdict = firmware.check(
            software_build_id=entry.software_build_id, date_code=entry.date_code
        )
        if verdict == "outside":
            return Match(
                "firmware_outside",
                profile.id,
                f"{label} firmware is outside the range verified for {profile.id}",
            )
    return Match("matched", profile.id, f"{label} is {profile.id}")


def judge(
    entry: BridgeDevice, profiles: Mapping[str, Profile], allowed: AllowedDevice | None
) -> Verdict:
    """What the gateway does with a network member (see ``gateway.inventory.Status``)."""
    match = match_profile(entry, profiles, None if allowed is None else allowed.profile)
    if match.kind == "pending":
        return Verdict(match, "pending", match.detail)
    if match.kind == "unsupported":
        return Verdict(match, "unsupported", match.detail)
    if allowed is None:
        if match.kind == "matched":
            hint = f"not allow-listed; {match.detail} and can be paired"
        else:
            hint = f"not allow-listed; {match.detail}"
        return Verdict(match, "unknown", hint)
    paired = f"allow-listed as {allowed.profile}"
    if match.kind == "matched" and match.profile == allowed.profile:
        return Verdict(match, "trusted", f"{paired}; the fingerprint matches")
    if match.kind == "matched" or (
        match.kind == "firmware_outside" and match.profile != allowed.profile
    ):
        return Verdict(match, "mismatch", f"{paired}, but {match.detail}")
    return Verdict(match, "unsupported", f"{paired}, but {match.detail}")


def _reported(
    row: NetworkDevice, previous: NetworkDevice | None
) -> tuple[NetworkDevice, Report | None]:
    """Mark the row reported if its status raises a report it has not raised yet."""
    wanted = REPORTS.get(row.status)
    already = None if previous is None else previous.reported
    if wanted is None:
        # Trusted again (or gone): a later bad verdict is news and is reported again.
        keep = already if row.status in ("pending", "left") else None
        return replace(row, reported=keep), None
    if wanted == already:
        return replace(row, reported=already), None
    return replace(row, reported=wanted), Report(wanted, replace(row, reported=wanted), None)


def plan_devices(
    previous: Mapping[str, NetworkDevice],
    entries: Sequence[BridgeDevice],
    profiles: Mapping[str, Profile],
    allow: AllowList,
    now: datetime,
) -> Plan:
    """A full ``bridge/devices`` listing: judge every member; absent ones have left."""
    rows: list[NetworkDevice] = []
    reports: list[Report] = []
    listed: set[str] = set()
    for entry in entries:
        if entry.type == "Coordinator":
            continue
        key = entry.ieee.lower()
        if key in listed:
            continue
        listed.add(key)
        before = previous.get(key)
        allowed = allow.find(entry.ieee, entry.friendly_name)
        interview = _interview(entry, before)
        verdict = judge(entry, profiles, allowed)
        if interview == "failed":
            verdict = Verdict(Match("unsupported", None, FAILED), "unsupported", FAILED)
        row = NetworkDevice(
            ieee=key,
            friendly_name=entry.friendly_name,
            interview=interview,
            in_network=True,
            match=verdict.match.kind,
            status=verdict.status,
            reason=verdict.reason,
            first_seen_at=now if before is None else before.first_seen_at,
            updated_at=now,
            type=entry.type,
            model=entry.model,
            vendor=entry.vendor,
            model_id=entry.model_id,
            manufacturer=entry.manufacturer,
            software_build_id=entry.software_build_id,
            date_code=entry.date_code,
            power_source=entry.power_source,
            supported=entry.supported,
            profile=verdict.match.profile if verdict.match.kind == "matched" else None,
            allowed_name=None if allowed is None else allowed.friendly_name,
            allowed_profile=None if allowed is None else allowed.profile,
        )
        _add(rows, reports, row, before, allowed)
    for key, before in previous.items():
        if key not in listed and before.in_network:
            gone = replace(
                before,
                in_network=False,
                status="left",
                reason="no longer in the Zigbee network",
                updated_at=now,
            )
            _add(rows, reports, gone, before, allow.find(before.ieee, before.friendly_name))
    return Plan(rows, reports)


def _interview(entry: BridgeDevice, before: NetworkDevice | None) -> Interview:
    if entry.interview_completed and not entry.interviewing:
        return "successful"
    if entry.interviewing:
        return "started"
    if before is not None and before.interview == "failed":
        return "failed"
    return "pending"


def _add(
    rows: list[NetworkDevice],
    reports: list[Report],
    row: NetworkDevice,
    before: NetworkDevice | None,
    allowed: AllowedDevice | None,
) -> None:
    row, report = _reported(row, before)
    if not row.same_as(before):
        rows.append(row)
    if report is not None:
        reports.append(replace(report, allowed=allowed))


def plan_event(
    previous: Mapping[str, NetworkDevice],
    event: BridgeEvent,
    allow: AllowList,
    now: datetime,
) -> Plan:
    """A ``bridge/event``: joins and interviews update the row; the listing judges it.

    Zigbee2MQTT republishes ``bridge/devices`` after a successful interview, which carries
    the fingerprint, so only a failed interview is judged here (unsupported). A leave
    marks the device gone. Events without an IEEE address change nothing.
    """
    if event.ieee is None:
        return Plan([], [])
    key = event.ieee.lower()
    before = previous.get(key)
    allowed = allow.find(event.ieee, event.friendly_name)
    name = event.friendly_name or (before.friendly_name if before else key)
    base = before or NetworkDevice(
        ieee=key,
        friendly_name=name,
        interview="pending",
        in_network=True,
        match="pending",
        status="pending",
        reason="joined; its interview has not finished",
        first_seen_at=now,
        updated_at=now,
        allowed_name=None if allowed is None else allowed.friendly_name,
        allowed_profile=None if allowed is None else allowed.profile,
    )
    row: NetworkDevice | None = None
    if event.type in ("device_joined", "device_announce"):
        row = replace(base, friendly_name=name, in_network=True, updated_at=now)
        if before is not None and before.status == "left":
            row = replace(row, status="pending", match="pending", reason="joined again")
    elif event.type == "device_interview":
        row = _interviewed(base, event.status, name, now)
    elif event.type == "device_leave":
        row = replace(
            base,
            in_network=False,
            status="left",
            reason="left the Zigbee network",
            updated_at=now,
        )
    if row is None:
        return Plan([], [])
    rows: list[NetworkDevice] = []
    reports: list[Report] = []
    _add(rows, reports, row, before, allowed)
    return Plan(rows, reports)


def _interviewed(
    base: NetworkDevice, status: str | None, name: str, now: datetime
) -> NetworkDevice | None:
    if status == "started":
        return replace(
            base, friendly_name=name, interview="started", in_network=True, updated_at=now
        )
    if status == "successful":
        return replace(
            base, friendly_name=name, interview="successful", in_network=True, updated_at=now
        )
    if status == "failed":
        return replace(
            base,
            friendly_name=name,
            interview="failed",
            in_network=True,
            match="unsupported",
            status="unsupported",
            reason=FAILED,
            profile=None,
            updated_at=now,
        )
    return None
