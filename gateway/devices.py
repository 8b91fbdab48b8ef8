"""The allow-list as an installer manages it: add, remove, rename and move devices.

A device's name, room, placement and profile are data in ``gateway.yaml``, so a resident's
kit can move to another place (a short-term stay) without re-pairing: ``move`` changes the
room and the place, nothing else. Each change is a pure function from one configuration to
the next (refusals are :class:`DeviceError` sentences); :func:`update_config` applies one
under a file lock and writes the file atomically. The running daemon notices the new file
(:class:`ConfigWatcher`, or SIGHUP) and reloads the allow-list without a restart.

:func:`add`, :func:`remove`, :func:`rename` and :func:`move` are the changes as the CLI and the
daemon (for the centre's commands) make them, with Zigbee2MQTT kept in step: a rename is asked
of Z2M first and refused whole if Z2M refuses; a removed device is asked to leave the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from firmware_profiles.schema import Profile
from gateway.config import CONFIG_FILE, AllowedDevice, GatewayConfig, load_config, save_config
from gateway.installer_bridge import BridgeError, BridgeLink
from trygg.wire.messages import DEVICE_NAME_PATTERN, IEEE_PATTERN

LOCK_FILE = ".gateway.yaml.lock"

_NAME = re.compile(DEVICE_NAME_PATTERN)
_IEEE = re.compile(IEEE_PATTERN)


class DeviceError(ValueError):
    """An allow-list change that cannot be made; the message is a sentence for the installer."""


def check_name(name: str) -> str:
    """A name Zigbee2MQTT accepts as a friendly name and a topic can carry."""
    if not _NAME.match(name) or name.endswith("/") or "//" in name:
        raise DeviceError(
            f"{name!r} is not a usable device name: use letters, digits, space and ._/:- "
            "(at most 128, e.g. 'bedroom/button')"
        )
    last = name.rsplit("/", 1)[-1]
    if last in ("set", "get", "availability", "action") or name.startswith("bridge"):
        raise DeviceError(f"{name!r} would collide with a Zigbee2MQTT topic; choose another")
    return name


def _check_ieee(ieee: str | None) -> str | None:
    if ieee is None:
        return None
    if not _IEEE.match(ieee):
        raise DeviceError(f"{ieee!r} is not an IEEE address like 0x00158d00045a1b2c")
    return ieee.lower()


def find(config: GatewayConfig, name: str) -> AllowedDevice:
    for device in config.devices:
        if device.friendly_name == name:
            return device
    known = ", ".join(d.friendly_name for d in config.devices) or "none"
    raise DeviceError(f"no allow-listed device is called {name!r} (allow-listed: {known})")


def _replace(config: GatewayConfig, old: AllowedDevice, new: AllowedDevice | None) -> GatewayConfig:
    """The allow-list with ``old`` replaced by ``new`` in its place (or dropped)."""
    devices: list[AllowedDevice] = []
    for device in config.devices:
        if device is not old:
            devices.append(device)
        elif new is not None:
            devices.append(new)
    return config.model_copy(update={"devices": devices})


def add_device(
    config: GatewayConfig,
    profiles: Mapping[str, Profile],
    *,
    name: str,
    profile: str,
    room: str | None = None,
    place: str | None = None,
    ieee: str | None = None,
    resident_ref: str | None = None,
) -> GatewayConfig:
    """Allow-list a device. The name and the IEEE address must be new to this home."""
    check_name(name)
    address = _check_ieee(ieee)
    if profile not in profiles:
        known = ", ".join(sorted(profiles))
        raise DeviceError(f"there is no profile {profile!r}; known profiles: {known}")
    for device in config.devices:
        if device.friendly_name == name:
            raise DeviceError(f"a device called {name!r} is already allow-listed")
        if address is not None and device.ieee is not None and device.ieee.lower() == address:
            raise DeviceError(f"{address} is already allow-listed as {device.friendly_name!r}")
    try:
        added = AllowedDevice(
            friendly_name=name,
            ieee=address,
            profile=profile,
            room=room,
            place=place,
            resident_ref=resident_ref,
        )
    except ValueError as exc:
        raise DeviceError(f"cannot allow-list {name!r}: {_first_error(exc)}") from exc
    return config.model_copy(update={"devices": [*config.devices, added]})


def remove_device(config: GatewayConfig, name: str) -> tuple[GatewayConfig, AllowedDevice]:
    """Take a device off the allow-list; its messages are reported as unknown from then on."""
    device = find(config, name)
    return _replace(config, device, None), device


def rename_device(config: GatewayConfig, name: str, to: str) -> GatewayConfig:
    """Give a device a new name (Zigbee2MQTT is renamed by the caller)."""
    device = find(config, name)
    check_name(to)
    if to != name and any(d.friendly_name == to for d in config.devices):
        raise DeviceError(f"a device called {to!r} is already allow-listed")
    return _replace(config, device, device.model_copy(update={"friendly_name": to}))


def move_device(
    config: GatewayConfig, name: str, *, room: str | None, place: str | None
) -> GatewayConfig:
    """Put a device in another room and/or place; its pairing and profile stay as they are."""
    device = find(config, name)
    if room is None and place is None:
        raise DeviceError("say where to: --room and/or --place")
    update: dict[str, str] = {}
    if room is not None:
        update["room"] = room
    if place is not None:
        update["place"] = place
    try:
        moved = AllowedDevice.model_validate({**device.model_dump(), **update})
    except ValueError as exc:
        raise DeviceError(f"cannot move {name!r}: {_first_error(exc)}") from exc
    return _replace(config, device, moved)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        listed = errors()
        if listed:
            first = listed[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first.get('msg', 'invalid')}"
    return str(exc)


# --- applying a change to the file ---------------------------------------------------------------


@contextlib.contextmanager
def config_lock(state_dir: Path) -> Iterator[None]:
    """Serialise read-modify-write of ``gateway.yaml`` between the CLI and the daemon."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def update_config(
    state_dir: Path, change: Callable[[GatewayConfig], GatewayConfig]
) -> GatewayConfig:
    """Load, change and atomically save ``gateway.yaml`` under the lock; return the new one.

    Raises DeviceError from ``change`` (nothing is written) or ConfigError on a bad file.
    """
    with config_lock(state_dir):
        current = load_config(state_dir)
        changed = change(current)
        if changed != current:
            save_config(changed)
        return changed


# --- noticing changes in the daemon -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileSignature:
    inode: int
    size: int
    mtime_ns: int


def file_signature(path: Path) -> FileSignature | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return FileSignature(st.st_ino, st.st_size, st.st_mtime_ns)


class ConfigWatcher:
    """Says when ``gateway.yaml`` was replaced or edited since the last look.

    An atomic replace always makes a new inode, so even two writes within one mtime tick
    are seen; an in-place edit changes size or mtime.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CONFIG_FILE
        self._seen = file_signature(self.path)

    def changed(self) -> bool:
        now = file_signature(self.path)
        if now == self._seen:
            return False
        self._seen = now
        return True


# --- changes that also reach Zigbee2MQTT ----------------------------------------------------------

LISTING_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """The allow-list after a change, and what Zigbee2MQTT said about its part of it."""

    config: GatewayConfig
    notes: tuple[str, ...] = ()


async def _z2m_name(link: BridgeLink, device: AllowedDevice) -> str:
    """The name Zigbee2MQTT knows the device by: its listing by IEEE address, else ours."""
    await link.wait_devices(LISTING_TIMEOUT_S)
    listed = link.listed(device.ieee)
    return listed.friendly_name if listed is not None else device.friendly_name


async def add(
    state_dir: Path,
    profiles: Mapping[str, Profile],
    link: BridgeLink | None,
    *,
    name: str,
    profile: str,
    room: str | None = None,
    place: str | None = None,
    ieee: str | None = None,
    resident_ref: str | None = None,
) -> Outcome:
    """Allow-list a device; if Zigbee2MQTT lists its address under another name, rename it."""
    change = partial(
        add_device,
        profiles=profiles,
        name=name,
        profile=profile,
        room=room,
        place=place,
        ieee=ieee,
        resident_ref=resident_ref,
    )
    config = await asyncio.to_thread(update_config, state_dir, change)
    notes: list[str] = []
    if link is not None and ieee is not None:
        added = find(config, name)
        current = await _z2m_name(link, added)
        if current != name:
            notes.append(await _rename_in_z2m(link, current, name, required=False))
    if link is not None:
        notes.extend(await configure_reporting(link, name, profiles[profile]))
    return Outcome(config, tuple(n for n in notes if n))


async def configure_reporting(link: BridgeLink, name: str, profile: Profile) -> list[str]:
    """Send the profile's reporting requests; return a note for each one not accepted.

    Some devices (the HS1SA smoke detector) report only every ~18 h with Zigbee2MQTT's
    defaults, and their profile's check-in interval holds only once this is accepted: the
    installer must hear when it was not, or supervision will call the device silent.
    """
    notes: list[str] = []
    for report in profile.supervision.reporting:
        what = f"{report.cluster}.{report.attribute}"
        try:
            response = await link.configure_reporting(name, report)
        except BridgeError as exc:
            notes.append(f"reporting of {what} not configured ({exc}); wake the device, retry")
            continue
        if not response.ok:
            error = response.error or "refused"
            notes.append(f"reporting of {what} not configured: {error}; wake the device, retry")
    return notes


async def remove(
    state_dir: Path, link: BridgeLink | None, name: str, *, keep_paired: bool = False
) -> Outcome:
    """Take a device off the allow-list and (unless ``keep_paired``) out of the Zigbee network.

    The allow-list change stands even when Zigbee2MQTT cannot remove a sleeping device: it
    is no longer trusted either way, and its messages are reported as unknown.
    """
    removed: list[AllowedDevice] = []

    def change(config: GatewayConfig) -> GatewayConfig:
        changed, device = remove_device(config, name)
        removed.append(device)
        return changed

    config = await asyncio.to_thread(update_config, state_dir, change)
    if link is None or keep_paired:
        return Outcome(config)
    ident = await _z2m_name(link, removed[0])
    try:
        response = await link.remove(ident)
    except BridgeError as exc:
        return Outcome(config, (f"still in the Zigbee network: {exc}",))
    if not response.ok:
        return Outcome(
            config,
            (
                f"still in the Zigbee network: Zigbee2MQTT said {response.error}; wake the "
                "device (press its button) or factory-reset it, then remove it again",
            ),
        )
    return Outcome(config, ("removed from the Zigbee network as well",))


async def rename(state_dir: Path, link: BridgeLink | None, name: str, to: str) -> Outcome:
    """Rename in Zigbee2MQTT first (so its topics carry the new name), then the allow-list.

    Refused without any change when Z2M refuses; when Z2M does not answer, the allow-list is
    renamed only if the device's IEEE address lets the gateway still recognise it.
    """
    current = await asyncio.to_thread(load_config, state_dir)
    rename_device(current, name, to)  # refuses a bad or taken name before Z2M is touched
    device = find(current, name)
    notes: list[str] = []
    if link is not None and to != name:
        z2m_name = await _z2m_name(link, device)
        notes.append(await _rename_in_z2m(link, z2m_name, to, required=device.ieee is None))
    config = await asyncio.to_thread(
        update_config, state_dir, partial(rename_device, name=name, to=to)
    )
    return Outcome(config, tuple(n for n in notes if n))


async def _rename_in_z2m(link: BridgeLink, old: str, new: str, *, required: bool) -> str:
    """Ask Z2M to rename; return a note, or raise DeviceError when the rename must happen."""
    try:
        response = await link.rename(old, new)
    except BridgeError as exc:
        if required:
            raise DeviceError(
                f"{exc}; without an IEEE address the gateway would lose the device"
            ) from exc
        return f"Zigbee2MQTT not renamed ({exc}); the gateway still knows it by its address"
    if response.ok:
        return ""
    error = response.error or "refused"
    if "does not exist" in error:
        return f"Zigbee2MQTT does not list {old!r}; renamed in the allow-list only"
    raise DeviceError(f"Zigbee2MQTT refused to rename {old!r} to {new!r}: {error}")


async def move(state_dir: Path, name: str, *, room: str | None, place: str | None) -> Outcome:
    config = await asyncio.to_thread(
        update_config, state_dir, partial(move_device, name=name, room=room, place=place)
    )
    return Outcome(config)
