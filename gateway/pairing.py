"""``trygg gateway pair``: a time-limited Zigbee2MQTT pairing window for the installer.

The window is bounded (1 to 10 minutes) and always closed explicitly: at its end, on
Ctrl-C or SIGTERM, and when anything fails after the request to open it was sent. Z2M
permits joining for at most 254 s per request, so a longer window is renewed before that
runs out; the clock is injected, so a test decides when the window ends.

While it is open, every device that joins is shown as it joins and when its interview
ends, with the profile its fingerprint matched or the reason it matched none (interview
failed, Z2M has no definition, no Trygg profile, several profiles). Nothing that joins is
trusted: a matched device is allow-listed only with ``--add`` (or when the installer says
yes at the prompt); the rest are reported by the running gateway as unknown devices.
:class:`PairingTracker` is the pure part (bridge messages in, lines and candidates out).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import aiomqtt

from drivers.mqtt.zigbee2mqtt import BridgeDevice, Z2mParseError, parse_bridge_devices
from firmware_profiles.loader import load_profiles
from firmware_profiles.schema import Profile, profiles_matching
from gateway.config import AllowedDevice, GatewayConfig, load_config
from gateway.devices import DeviceError, add_device, configure_reporting, update_config
from gateway.installer_bridge import (
    MAX_PERMIT_JOIN_S,
    BridgeError,
    BridgeLink,
    BridgeMessage,
    InterviewedDevice,
    open_bridge,
    parse_join_event,
)
from trygg.wire.clock import Clock, system_clock

log = logging.getLogger("trygg.gateway.pairing")

MIN_MINUTES, MAX_MINUTES = 1, 10
RENEW_MARGIN_S = 20
"""Renew the permit-join this long before Z2M's 254 s run out."""
TICK_S = 0.25
INFO_TIMEOUT_S = 3.0

Emit = Callable[[str], None]


class PairingError(RuntimeError):
    """The window could not be opened (or the request was unusable); a sentence."""


@dataclass(frozen=True, slots=True)
class PairingOptions:
    minutes: int = 3
    room: str | None = None
    place: str | None = None
    add: bool = False
    resident_ref: str | None = None

    def check(self) -> None:
        if not MIN_MINUTES <= self.minutes <= MAX_MINUTES:
            raise PairingError(
                f"a pairing window is {MIN_MINUTES} to {MAX_MINUTES} minutes "
                f"(got {self.minutes}): an open Zigbee network lets any device in"
            )
        if self.add and self.room is None:
            raise PairingError("--add needs --room: every allow-listed device has a room")


# --- the pure part ------------------------------------------------------------------------------


def match_profile(
    profiles: Mapping[str, Profile],
    *,
    supported: bool | None,
    model: str | None,
    vendor: str | None,
    model_id: str | None,
) -> tuple[Profile | None, str]:
    """The one profile a device's fingerprint matches, or None and why not."""
    if supported is False or (model is None and model_id is None):
        ident = f" (model id {model_id})" if model_id else ""
        return None, f"Zigbee2MQTT has no definition for it{ident}: no profile can match"
    found = profiles_matching(profiles.values(), model=model, vendor=vendor, model_id=model_id)
    if not found:
        what = " ".join(p for p in (vendor, model) if p) or f"model id {model_id}"
        return None, f"no Trygg profile for {what}; it will be reported, not trusted"
    if len(found) > 1:
        ids = ", ".join(sorted(p.id for p in found))
        return None, f"several profiles match ({ids}); allow-list it by hand with --profile"
    return found[0], ""


_SLUG = re.compile(r"[^a-z0-9_-]+")


def suggest_name(room: str | None, category: str, taken: set[str]) -> str:
    """``bedroom/button``; ``bedroom/button-2`` when that is taken."""
    slug = _SLUG.sub("_", (room or "").strip().lower()).strip("_")[:40]
    base = f"{slug}/{category}" if slug else category
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


@dataclass
class Candidate:
    """A device that joined during this window."""

    ieee: str
    z2m_name: str
    status: str = "joined"
    """joined, interviewing, interviewed or failed."""
    model: str | None = None
    vendor: str | None = None
    description: str | None = None
    model_id: str | None = None
    supported: bool | None = None
    profile: Profile | None = None
    reason: str = ""
    allow_listed_as: str | None = None


@dataclass
class PairingTracker:
    """Turns bridge events into what the installer sees; pure (no I/O, no clock)."""

    profiles: Mapping[str, Profile]
    allowed: Sequence[AllowedDevice]
    candidates: dict[str, Candidate] = field(default_factory=dict)
    _known: dict[str, BridgeDevice] = field(default_factory=dict)

    def allowed_as(self, ieee: str) -> str | None:
        for device in self.allowed:
            if device.ieee is not None and device.ieee.lower() == ieee.lower():
                return device.friendly_name
        return None

    def on_devices(self, devices: Sequence[BridgeDevice]) -> None:
        """Remember model ids and names from ``bridge/devices`` for later matching."""
        self._known = {d.ieee.lower(): d for d in devices}
        for candidate in self.candidates.values():
            entry = self._known.get(candidate.ieee.lower())
            if entry is not None:
                candidate.model_id = candidate.model_id or entry.model_id
                candidate.z2m_name = entry.friendly_name

    def on_event(self, event: InterviewedDevice) -> tuple[list[str], Candidate | None]:
        """Lines to show for one ``bridge/event``, and a device now ready to allow-list."""
        if event.ieee is None or event.kind not in (
            "device_joined",
            "device_announce",
            "device_interview",
        ):
            return [], None
        ieee = event.ieee.lower()
        candidate = self.candidates.get(ieee)
        lines: list[str] = []
        if candidate is None:
            if event.kind == "device_announce":
                return [], None  # an old device re-announcing itself, not a join
            candidate = Candidate(ieee, event.friendly_name or ieee)
            self.candidates[ieee] = candidate
            already = self.allowed_as(ieee)
            suffix = f" (already allow-listed as {already})" if already else ""
            lines.append(f"+ {ieee} joined the network{suffix}; waiting for its interview")
        if event.kind != "device_interview" or event.status is None:
            return lines, None
        if event.status == "started":
            if candidate.status == "joined":
                candidate.status = "interviewing"
            return lines, None
        if event.status == "failed":
            candidate.status = "failed"
            candidate.reason = "the interview failed: reset the device and pair it again"
            lines.append(f"! {ieee}: {candidate.reason}")
            return lines, None
        if event.status != "successful" or candidate.status == "interviewed":
            return lines, None
        candidate.status = "interviewed"
        candidate.model, candidate.vendor = event.model, event.vendor
        candidate.description, candidate.supported = event.description, event.supported
        known = self._known.get(ieee)
        if known is not None:
            candidate.model_id = known.model_id
        candidate.profile, candidate.reason = match_profile(
            self.profiles,
            supported=candidate.supported,
            model=candidate.model,
            vendor=candidate.vendor,
            model_id=candidate.model_id,
        )
        what = " ".join(p for p in (candidate.vendor, candidate.model) if p) or "a device"
        if candidate.description:
            what += f" ({candidate.description})"
        if candidate.profile is None:
            lines.append(f"! {ieee} is {what}: {candidate.reason}")
            return lines, None
        profile = candidate.profile
        lines.append(f"= {ieee} is {what}: profile {profile.id} ({profile.category})")
        already = self.allowed_as(ieee)
        if already is not None:
            candidate.allow_listed_as = already
            lines.append(f"  already allow-listed as {already}")
            return lines, None
        return lines, candidate


# --- the session ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddAnswer:
    name: str
    room: str


Ask = Callable[[Candidate, str], Awaitable[AddAnswer | None]]
"""Asks the installer whether to allow-list a matched device (name suggested)."""


@dataclass
class PairingSummary:
    opened: bool = False
    closed: bool = False
    joined: list[Candidate] = field(default_factory=list)
    added: list[str] = field(default_factory=list)


@dataclass
class PairingSession:
    """One pairing window; :meth:`run` opens, watches and always closes it."""

    config: GatewayConfig
    options: PairingOptions
    emit: Emit
    ask: Ask | None = None
    clock: Clock = system_clock
    stop: asyncio.Event | None = None
    tick_s: float = TICK_S
    info_timeout_s: float = INFO_TIMEOUT_S
    response_timeout_s: float = 10.0
    summary: PairingSummary = field(default_factory=PairingSummary)

    async def run(self) -> PairingSummary:
        self.options.check()
        profiles = await asyncio.to_thread(load_profiles, self.config.profiles_dir)
        tracker = PairingTracker(profiles, list(self.config.devices))
        async with open_bridge(
            self.config.broker,
            "pair",
            watch=True,
            response_timeout_s=self.response_timeout_s,
        ) as link:
            info = await link.wait_info(self.info_timeout_s)
            if link.online is False:
                raise PairingError(
                    "Zigbee2MQTT reports itself offline (bridge/state); start it and try again"
                )
            version = info.version if info is not None else None
            if info is None:
                self.emit("Zigbee2MQTT published no bridge/info; using the 2.x permit_join form.")
            try:
                await self._window(link, tracker, profiles, version)
            finally:
                self.summary.joined = list(tracker.candidates.values())
                if self.summary.opened:
                    await self._close(link)
        return self.summary

    async def _open(self, link: BridgeLink, seconds: int) -> None:
        response = await link.permit_join(seconds)
        if not response.ok:
            raise PairingError(f"Zigbee2MQTT refused to permit joining: {response.error}")

    async def _window(
        self,
        link: BridgeLink,
        tracker: PairingTracker,
        profiles: Mapping[str, Profile],
        version: str | None,
    ) -> None:
        total = timedelta(minutes=self.options.minutes)
        started = self.clock()
        deadline = started + total
        first = int(min(total.total_seconds(), MAX_PERMIT_JOIN_S))
        self.summary.opened = True  # from here on the window must be closed, come what may
        await self._open(link, first)
        renew_at = started + timedelta(seconds=first - RENEW_MARGIN_S)
        label = f"Zigbee2MQTT {version}" if version else "Zigbee2MQTT"
        self.emit(
            f"Pairing window open for {self.options.minutes} min ({label}). "
            "Put each device in pairing mode now; Ctrl-C closes the window."
        )
        log.info("pairing window opened for %d min", self.options.minutes)
        while True:
            now = self.clock()
            if now >= deadline:
                self.emit("The pairing window's time is up.")
                return
            if self.stop is not None and self.stop.is_set():
                self.emit("Stopping: closing the pairing window.")
                return
            if now >= renew_at:
                left = int((deadline - now).total_seconds())
                seconds = min(left + 1, MAX_PERMIT_JOIN_S)
                await self._open(link, seconds)
                renew_at = now + timedelta(seconds=max(seconds - RENEW_MARGIN_S, 1))
                log.info("pairing window renewed for %d s", seconds)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancellation (Ctrl-C)
                # that lands as a message arrives, and the window would stay open.
                async with asyncio.timeout(self.tick_s):
                    message = await link.watched.get()
            except TimeoutError:
                continue
            await self._handle(link, tracker, profiles, message)

    async def _handle(
        self,
        link: BridgeLink,
        tracker: PairingTracker,
        profiles: Mapping[str, Profile],
        message: BridgeMessage,
    ) -> None:
        try:
            if message.kind == "devices":
                tracker.on_devices(parse_bridge_devices(message.payload))
                return
            lines, ready = tracker.on_event(parse_join_event(message.payload))
        except Z2mParseError as exc:
            log.warning("unusable bridge message during pairing: %s", exc.reason)
            return
        for line in lines:
            self.emit(line)
        if ready is not None and ready.profile is not None:
            await self._offer(link, tracker, profiles, ready)

    async def _offer(
        self,
        link: BridgeLink,
        tracker: PairingTracker,
        profiles: Mapping[str, Profile],
        candidate: Candidate,
    ) -> None:
        assert candidate.profile is not None
        current = await asyncio.to_thread(load_config, self.config.state_dir)
        taken = {d.friendly_name for d in current.devices}
        suggested = suggest_name(self.options.room, candidate.profile.category, taken)
        answer: AddAnswer | None = None
        if self.options.add and self.options.room is not None:
            answer = AddAnswer(suggested, self.options.room)
        elif self.ask is not None:
            answer = await self.ask(candidate, suggested)
        if answer is None:
            self.emit(
                f"  not allow-listed; to add it: trygg gateway devices add --name {suggested} "
                f"--profile {candidate.profile.id} --room ROOM --ieee {candidate.ieee}"
            )
            return
        await self._add(link, tracker, profiles, candidate, answer)

    async def _add(
        self,
        link: BridgeLink,
        tracker: PairingTracker,
        profiles: Mapping[str, Profile],
        candidate: Candidate,
        answer: AddAnswer,
    ) -> None:
        assert candidate.profile is not None
        change = partial(
            add_device,
            profiles=profiles,
            name=answer.name,
            profile=candidate.profile.id,
            room=answer.room,
            place=self.options.place,
            ieee=candidate.ieee,
            resident_ref=self.options.resident_ref,
        )
        try:
            updated = await asyncio.to_thread(update_config, self.config.state_dir, change)
        except DeviceError as exc:
            self.emit(f"  not allow-listed: {exc}")
            return
        candidate.allow_listed_as = answer.name
        tracker.allowed = list(updated.devices)
        self.summary.added.append(answer.name)
        self.emit(f"  allow-listed as {answer.name} in room {answer.room}")
        for note in await configure_reporting(link, candidate.z2m_name, candidate.profile):
            self.emit(f"  ({note})")
        if candidate.z2m_name != answer.name:
            try:
                renamed = await link.rename(candidate.z2m_name, answer.name)
            except BridgeError as exc:
                self.emit(f"  (Zigbee2MQTT keeps the name {candidate.z2m_name}: {exc})")
                return
            if renamed.ok:
                candidate.z2m_name = answer.name
            else:
                self.emit(f"  (Zigbee2MQTT keeps the name {candidate.z2m_name}: {renamed.error})")

    async def _close(self, link: BridgeLink) -> None:
        """Close the window; runs in ``finally``, so also after Ctrl-C or a failure."""
        try:
            response = await link.permit_join(0)
        except (BridgeError, aiomqtt.MqttError) as exc:
            self.emit(
                f"Could not confirm that the pairing window closed ({exc}); Zigbee2MQTT "
                f"closes it by itself within {MAX_PERMIT_JOIN_S} s."
            )
            log.error("pairing window close not confirmed: %s", exc)
            return
        if not response.ok:
            self.emit(f"Zigbee2MQTT refused to close the pairing window: {response.error}")
            log.error("pairing window close refused: %s", response.error)
            return
        self.summary.closed = True
        joined = len(self.summary.joined)
        log.info("pairing window closed")
        self.emit(
            f"Pairing window closed. {len(self.summary.added)} device(s) allow-listed"
            + (f", {joined} joined." if joined else ".")
        )
