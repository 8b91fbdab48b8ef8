"""The daemon's installer side: allow-list reloads, the test alarm and the centre's commands.

- **Allow-list reload.** ``gateway.yaml`` is looked at every second (and at once on
  SIGHUP); when it was replaced or edited, the new allow-list goes to the pipeline without
  a restart. A file that does not load is logged and the allow-list in use is kept. Broker
  and profile-directory changes still need a restart; the log says so.
- **Test alarm.** ``trygg gateway test-alarm`` publishes a request on the control topic
  ``trygg/control/test-alarm/request`` of the home's broker (which listens on loopback only,
  ``deploy/gateway/mosquitto-trygg.conf``). The daemon, not the command, commits an
  ``alarm.test`` event to the outbox like any alarm, wakes the uplink, and publishes on
  ``trygg/control/test-alarm/result/<request id>`` first that it is committed, then the
  centre's verified receipt and the round trip (commit to verified receipt). The centre
  stores a test alarm and resolves it at once (outcome ``test_alarm``): it never pages an
  operator. One test at a time and at most ``MAX_TESTS_PER_HOUR``: test alarms are alarms,
  which the outbox never evicts.
- **The centre's device commands** arrive signed in heartbeat answers; each is applied once
  (its id is remembered in ``installer_commands``), the same way as the CLI does it, and its
  result goes back in the following heartbeats until the centre has it.
- **Inventory.** Each heartbeat carries the device inventory when it changed since the centre
  last stored it (by digest), and at least every ``INVENTORY_REFRESH`` for battery, link and
  last-seen values.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import aiomqtt
import sqlite_utils
from pydantic import ValidationError

from firmware_profiles.schema import Profile
from gateway import devices
from gateway.backoff import backoff_delay
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.devices import ConfigWatcher, DeviceError
from gateway.identity import Enrolment
from gateway.installer_bridge import BridgeError, BridgeLink, open_bridge
from gateway.inventory import DeviceRecord, read_inventory
from gateway.outbox import EventDraft, Migration, Outbox
from gateway.pipeline import IngestPipeline
from gateway.uplink import HeartbeatExtras, Uplink
from trygg.wire.canonical import CanonicalJsonError, canonical_json, parse_json_object
from trygg.wire.clock import Clock, format_ts, system_clock
from trygg.wire.jws import JwsError
from trygg.wire.messages import (
    IEEE_PATTERN,
    MAX_COMMANDS,
    MAX_INVENTORY_DEVICES,
    CommandResult,
    DeviceCommand,
    DeviceState,
    HeartbeatAnswer,
    Inventory,
    InventoryDevice,
    TestAlarmReport,
    verify_commands,
)

log = logging.getLogger("trygg.gateway.installer")
security_log = logging.getLogger("trygg.gateway.security")

CONTROL_BASE = "trygg/control"
TEST_ALARM_REQUEST_TOPIC = f"{CONTROL_BASE}/test-alarm/request"
TEST_ALARM_RESULT_PREFIX = f"{CONTROL_BASE}/test-alarm/result/"
TEST_ALARM_TYPE = "alarm.test"
TEST_RECEIPT_TIMEOUT_S = 30
MAX_RECEIPT_TIMEOUT_S = 120
MAX_TESTS_PER_HOUR = 20
WATCH_TICK_S = 1.0
INVENTORY_REFRESH = timedelta(minutes=15)
MAX_INVENTORY_BYTES = 32 * 1024
"""A heartbeat must stay well inside the centre's 64 KiB body limit, or it is refused and
the centre raises "gateway offline"; devices past this budget are left out (``truncated``)."""
MAX_REQUEST_BYTES = 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_IEEE = re.compile(IEEE_PATTERN)


def result_topic(request_id: str) -> str:
    return TEST_ALARM_RESULT_PREFIX + request_id


@dataclass(frozen=True, slots=True)
class TestAlarmRequest:
    __test__ = False

    request_id: str
    receipt_timeout_s: float


def parse_test_request(payload: bytes) -> TestAlarmRequest:
    """A test-alarm request: its id and how long to wait for the receipt (1 to 120 s).

    ValueError with a reason when unusable.
    """
    if len(payload) > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(payload)} bytes is too long")
    try:
        body = parse_json_object(payload)
    except CanonicalJsonError as exc:
        raise ValueError(f"not a JSON object: {exc}") from exc
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise ValueError("request_id must be 8-64 letters, digits, '-' or '_'")
    timeout = body.get("timeout_s", TEST_RECEIPT_TIMEOUT_S)
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        raise ValueError("timeout_s must be a whole number of seconds")
    return TestAlarmRequest(request_id, float(min(max(timeout, 1), MAX_RECEIPT_TIMEOUT_S)))


# --- commands remembered across restarts --------------------------------------------------------


def _create_commands_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE installer_commands ("
        " id INTEGER PRIMARY KEY, op TEXT NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN ('applied', 'failed')),"
        " reason TEXT, applied_at TEXT NOT NULL, reported INTEGER NOT NULL DEFAULT 0)"
    )


MIGRATIONS: tuple[Migration, ...] = (("installer.v1", _create_commands_v1),)


def _known_results(db: sqlite_utils.Database, ids: Sequence[int]) -> dict[int, CommandResult]:
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    rows = db.execute(
        f"SELECT id, status, reason FROM installer_commands WHERE id IN ({marks})",  # noqa: S608
        list(ids),
    ).fetchall()
    return {int(r[0]): CommandResult(id=int(r[0]), status=r[1], reason=r[2]) for r in rows}


def _record_result(
    db: sqlite_utils.Database, result: CommandResult, op: str, applied_at: str
) -> None:
    db.execute(
        "INSERT OR IGNORE INTO installer_commands (id, op, status, reason, applied_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (result.id, op, result.status, result.reason, applied_at),
    )


def _mark_reported(db: sqlite_utils.Database, ids: Sequence[int], reported: int = 1) -> None:
    db.conn.executemany(
        "UPDATE installer_commands SET reported = ? WHERE id = ?", [(reported, i) for i in ids]
    )


def _unreported(db: sqlite_utils.Database) -> list[CommandResult]:
    rows = db.execute(
        "SELECT id, status, reason FROM installer_commands WHERE reported = 0 ORDER BY id LIMIT ?",
        (MAX_COMMANDS,),
    ).fetchall()
    return [CommandResult(id=int(r[0]), status=r[1], reason=r[2]) for r in rows]


# --- the inventory as the centre gets it ---------------------------------------------------------


def device_state(record: DeviceRecord) -> DeviceState:
    if "offline" in record.conditions or record.availability == "offline":
        return "offline"
    if "silent" in record.conditions:
        return "silent"
    if record.availability == "online" or record.last_seen_at is not None:
        return "online"
    return "unknown"


def inventory_devices(
    records: Sequence[DeviceRecord], config: GatewayConfig
) -> list[InventoryDevice]:
    """The inventory rows (pure): allow-listed devices first, with room and place from the
    allow-list, then the rest of the network as the gateway judged it."""
    allowed = {d.friendly_name: d for d in config.devices}
    seen: set[str] = set()
    listed: list[InventoryDevice] = []
    others: list[InventoryDevice] = []
    for record in records:
        name = record.allowed_name or record.friendly_name
        entry = allowed.get(record.allowed_name or "")
        battery = None
        if record.battery is not None:
            battery = max(0, min(100, int(record.battery)))
        item = InventoryDevice(
            name=name[:128],
            ieee=record.ieee.lower() if record.ieee and _IEEE.match(record.ieee) else None,
            profile=(entry.profile if entry else record.allowed_profile or record.profile),
            room=(entry.room if entry else record.room),
            place=entry.place if entry else None,
            allow_listed=entry is not None,
            status=record.status,
            reason=record.reason[:200] or None,
            state=device_state(record) if entry is not None else "unknown",
            battery=battery,
            linkquality=record.linkquality
            if record.linkquality is not None and 0 <= record.linkquality <= 255
            else None,
            last_seen=format_ts(record.last_seen_at) if record.last_seen_at else None,
            model=record.model,
        )
        (listed if entry is not None else others).append(item)
        if entry is not None:
            seen.add(entry.friendly_name)
    for name, device in allowed.items():
        if name not in seen:
            listed.append(
                InventoryDevice(
                    name=name,
                    ieee=device.ieee.lower() if device.ieee else None,
                    profile=device.profile,
                    room=device.room,
                    place=device.place,
                    allow_listed=True,
                    status="pending",
                    reason="allow-listed; not heard from yet",
                )
            )
    return listed + others


def inventory_digest(items: Sequence[InventoryDevice]) -> str:
    """Changes when anything but the ever-moving link quality and last-seen time does."""
    stable = [item.model_dump(mode="json", exclude={"linkquality", "last_seen"}) for item in items]
    return hashlib.sha256(canonical_json({"devices": stable})).hexdigest()[:32]


def build_inventory(
    records: Sequence[DeviceRecord], config: GatewayConfig, now: datetime
) -> Inventory:
    """The report for the next heartbeat: allow-listed devices first, cut to fit the budget."""
    items = inventory_devices(records, config)
    shown: list[InventoryDevice] = []
    size = 0
    for item in items[:MAX_INVENTORY_DEVICES]:
        size += len(canonical_json(item.model_dump(mode="json", exclude_none=True))) + 1
        if size > MAX_INVENTORY_BYTES:
            break
        shown.append(item)
    return Inventory(
        digest=inventory_digest(items),
        generated_at=format_ts(now),
        devices=shown,
        truncated=len(items) > len(shown),
    )


# --- the daemon's part -------------------------------------------------------------------------

ResultStatus = Literal["committed", "delivered", "no_receipt", "refused", "failed"]


@dataclass
class InstallerControl:
    """Runs beside the pipeline and the uplink; see the module docstring."""

    config: GatewayConfig
    outbox: Outbox
    uplink: Uplink
    pipeline: IngestPipeline
    enrolment: Enrolment
    profiles: Mapping[str, Profile]
    clock: Clock = system_clock
    watch_tick_s: float = WATCH_TICK_S
    reload_requested: asyncio.Event = field(default_factory=asyncio.Event)
    link: BridgeLink | None = None
    last_test: TestAlarmReport | None = None
    _test_reported: TestAlarmReport | None = None
    _tests: deque[float] = field(default_factory=deque)
    _testing: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _center_digest: str | None = None
    _last_inventory_at: datetime | None = None
    _commands_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        for name, fn in MIGRATIONS:
            await self.outbox.register_migration(name, fn)
        self.uplink.attach_installation(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the control link and the allow-list watch running until ``stop``."""
        watch = asyncio.create_task(self._watch(stop), name="allow-list-watch")
        try:
            await self._control_link(stop)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the allow-list -----------------------------------------------------------------------

    async def _watch(self, stop: asyncio.Event) -> None:
        watcher = ConfigWatcher(self.config.state_dir)
        # A change made while the daemon was starting (after it read the file) counts too.
        with contextlib.suppress(ConfigError):
            now = await asyncio.to_thread(load_config, self.config.state_dir)
            if now.devices != self.config.devices:
                await self.reload(reason="gateway.yaml changed during start")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.watch_tick_s):
                    await self.reload_requested.wait()
            hup = self.reload_requested.is_set()
            self.reload_requested.clear()
            if watcher.changed() or hup:
                await self.reload(reason="SIGHUP" if hup else "gateway.yaml changed")

    async def reload(self, *, reason: str) -> bool:
        """Give the pipeline the allow-list now in ``gateway.yaml``; False if it did not load."""
        try:
            fresh = await asyncio.to_thread(load_config, self.config.state_dir)
        except ConfigError as exc:
            log.error("allow-list not reloaded (%s): %s; the one in use stays", reason, exc)
            return False
        unknown = sorted({d.profile for d in fresh.devices} - self.profiles.keys())
        if unknown:
            log.error(
                "allow-listed devices name profiles this daemon has not loaded (%s); "
                "restart the gateway after adding profile files",
                ", ".join(unknown),
            )
        if fresh.broker != self.config.broker or fresh.profiles_dir != self.config.profiles_dir:
            log.warning("broker or profile settings changed: restart the gateway to use them")
        await self.pipeline.update_allowed(fresh.devices)
        self.config = self.config.model_copy(update={"devices": fresh.devices})
        log.info("allow-list reloaded (%s): %d devices", reason, len(fresh.devices))
        self.uplink.request_heartbeat()
        return True

    # -- the control link ---------------------------------------------------------------------

    async def _control_link(self, stop: asyncio.Event) -> None:
        failures = 0
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    async with open_bridge(
                        self.config.broker,
                        f"{self.enrolment.gateway_id}-control",
                        extra_topics=(TEST_ALARM_REQUEST_TOPIC,),
                        on_other=self._on_control,
                    ) as link:
                        self.link = link
                        failures = 0
                        closed = asyncio.ensure_future(link.wait_closed())
                        await asyncio.wait({closed, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        closed.cancel()
                except (BridgeError, aiomqtt.MqttError) as exc:
                    log.warning("installer control link down: %s", exc)
                finally:
                    self.link = None
                if stop.is_set():
                    break
                failures += 1
                delay = backoff_delay(failures, initial_s=0.5, cap_s=30.0, rng=random.random)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        finally:
            stopper.cancel()

    def _on_control(self, topic: str, payload: bytes) -> None:
        if topic != TEST_ALARM_REQUEST_TOPIC:
            return
        try:
            request = parse_test_request(payload)
        except ValueError as exc:
            log.warning("test-alarm request refused: %s", exc)
            return
        task = asyncio.create_task(self._test_alarm(request), name="test-alarm")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, request_id: str, status: ResultStatus, **fields: Any) -> None:
        link = self.link
        if link is None:
            log.warning("test alarm %s: no control link to report %s", request_id, status)
            return
        body = json.dumps({"request_id": request_id, "status": status, **fields})
        with contextlib.suppress(aiomqtt.MqttError):
            await link.client.publish(result_topic(request_id), body, qos=1)

    def _may_test(self) -> str | None:
        """Why a test alarm must wait, or None."""
        if self._testing:
            return "a test alarm is already under way; wait for its result"
        now = asyncio.get_running_loop().time()
        while self._tests and now - self._tests[0] > 3600:
            self._tests.popleft()
        if len(self._tests) >= MAX_TESTS_PER_HOUR:
            return f"at most {MAX_TESTS_PER_HOUR} test alarms an hour"
        return None

    async def _test_alarm(self, request: TestAlarmRequest) -> None:
        request_id = request.request_id
        refusal = self._may_test()
        if refusal is not None:
            log.warning("test alarm %s refused: %s", request_id, refusal)
            await self._publish(request_id, "refused", reason=refusal)
            return
        self._testing = True
        loop = asyncio.get_running_loop()
        self._tests.append(loop.time())
        try:
            draft = EventDraft(
                event_class="alarm",
                type=TEST_ALARM_TYPE,
                occurred_at=self.clock(),
                data={"test": True, "request_id": request_id},
            )
            try:
                (signed,) = await self.outbox.commit([draft])
            except Exception as exc:
                log.exception("test alarm %s could not be committed", request_id)
                await self._publish(request_id, "failed", reason=f"not committed: {exc}"[:200])
                return
            committed_at = loop.time()
            event_id = signed.event.event_id
            receipt = self.uplink.receipt_for(event_id)
            self.uplink.notify()
            log.info("test alarm %s committed as event %s", request_id, event_id)
            await self._publish(request_id, "committed", event_id=event_id)
            try:
                async with asyncio.timeout(request.receipt_timeout_s):
                    verified = await asyncio.shield(receipt)
            except TimeoutError:
                receipt.add_done_callback(
                    lambda done: self._remember_test(event_id, committed_at, done)
                )
                await self._publish(
                    request_id,
                    "no_receipt",
                    event_id=event_id,
                    reason=(
                        f"no receipt from the centre within {request.receipt_timeout_s:g} s; "
                        "the test alarm stays queued and is delivered when the centre answers"
                    ),
                )
                return
            report = self._remember_test(event_id, committed_at, receipt)
            assert report is not None
            await self._publish(
                request_id,
                "delivered",
                event_id=event_id,
                rtt_ms=report.rtt_ms,
                receipt=verified.receipt.status,
                stored_at=verified.receipt.stored_at,
            )
        finally:
            self._testing = False

    def _remember_test(
        self, event_id: str, committed_at: float, done: asyncio.Future[Any]
    ) -> TestAlarmReport | None:
        if done.cancelled() or done.exception() is not None:
            return None
        verified = done.result()
        rtt_ms = max(0, round((verified.verified_at - committed_at) * 1000))
        report = TestAlarmReport(event_id=event_id, rtt_ms=rtt_ms, receipt=verified.receipt.status)
        self.last_test = report
        log.info("test alarm %s: %s after %d ms", event_id, report.receipt, rtt_ms)
        self.uplink.request_heartbeat()
        return report

    # -- heartbeats ---------------------------------------------------------------------------

    async def heartbeat_extras(self) -> HeartbeatExtras:
        now = self.clock()
        config = self.config

        def read(db: sqlite_utils.Database) -> tuple[list[DeviceRecord], list[CommandResult]]:
            return read_inventory(db), _unreported(db)

        records, results = await self.outbox.run(read)
        inventory = build_inventory(records, config, now)
        stale = self._last_inventory_at is None or now - self._last_inventory_at >= (
            INVENTORY_REFRESH
        )
        send = inventory.digest != self._center_digest or stale
        test = self.last_test if self.last_test != self._test_reported else None
        return HeartbeatExtras(
            inventory=inventory if send else None,
            command_results=tuple(results),
            test_alarm=test,
        )

    async def heartbeat_answered(self, sent: HeartbeatExtras, answer: HeartbeatAnswer) -> None:
        if sent.inventory is not None:
            self._last_inventory_at = self.clock()
        self._center_digest = answer.inventory_digest
        if sent.test_alarm is not None:
            self._test_reported = sent.test_alarm
        if sent.command_results:
            ids = [r.id for r in sent.command_results]
            await self.outbox.run(partial(_mark_reported, ids=ids))
        if answer.commands:
            commands = self._verified_commands(answer)
            if commands:
                await self.apply_commands(commands)

    def _verified_commands(self, answer: HeartbeatAnswer) -> list[DeviceCommand]:
        if answer.commands_sig is None:
            security_log.error("the centre sent device commands without a signature; ignored")
            return []
        try:
            return verify_commands(
                self.enrolment.gateway_id,
                answer.commands,
                answer.commands_sig,
                self.enrolment.center_key(),
            )
        except (JwsError, CanonicalJsonError, ValidationError, ValueError) as exc:
            security_log.error("device commands refused, they do not verify: %s", exc)
            return []

    async def apply_commands(self, commands: Sequence[DeviceCommand]) -> list[CommandResult]:
        """Apply each new command once (in id order) and remember its result."""
        async with self._commands_lock:
            ordered = sorted(commands, key=lambda c: c.id)
            ids = [c.id for c in ordered]
            known = await self.outbox.run(lambda db: _known_results(db, ids))
            if known:
                # The centre sent them again, so it lacks their results: report them again.
                await self.outbox.run(partial(_mark_reported, ids=list(known), reported=0))
            results: list[CommandResult] = []
            for command in ordered:
                if command.id in known:
                    continue
                result = await self._apply(command)
                await self.outbox.run(
                    partial(
                        _record_result,
                        result=result,
                        op=command.op,
                        applied_at=format_ts(self.clock()),
                    )
                )
                results.append(result)
            if results:
                await self.reload(reason="device commands from the centre")
            return results

    async def _apply(self, command: DeviceCommand) -> CommandResult:
        state_dir = self.config.state_dir
        link = self.link
        try:
            if command.op == "add":
                assert command.profile is not None
                outcome = await devices.add(
                    state_dir,
                    self.profiles,
                    link,
                    name=command.name,
                    profile=command.profile,
                    room=command.room,
                    place=command.place,
                    ieee=command.ieee,
                )
            elif command.op == "remove":
                outcome = await devices.remove(state_dir, link, command.name)
            elif command.op == "rename":
                assert command.to is not None
                outcome = await devices.rename(state_dir, link, command.name, command.to)
            else:
                outcome = await devices.move(
                    state_dir, command.name, room=command.room, place=command.place
                )
        except (DeviceError, ConfigError, OSError) as exc:
            log.warning("device command %d (%s) failed: %s", command.id, command.op, exc)
            return CommandResult(id=command.id, status="failed", reason=str(exc)[:200])
        note = "; ".join(outcome.notes)[:200] or None
        log.info("device command %d (%s %s) applied", command.id, command.op, command.name)
        return CommandResult(id=command.id, status="applied", reason=note)
