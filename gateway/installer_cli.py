"""The installer's subcommands: ``pair``, ``devices`` (add, remove, rename, move), ``test-alarm``.

Registered by ``gateway/cli.py``. Each talks to the home's broker directly with the broker
settings of ``gateway.yaml``; allow-list changes are written atomically to ``gateway.yaml``
and the running daemon picks them up within a second (or at once on SIGHUP). Expected
failures print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from firmware_profiles.loader import load_profiles
from gateway import devices
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.devices import DeviceError, Outcome
from gateway.installer_bridge import BridgeError, BridgeLink, open_bridge
from gateway.installer_control import (
    TEST_ALARM_REQUEST_TOPIC,
    inventory_devices,
    result_topic,
)
from gateway.inventory import read_inventory
from gateway.outbox import open_read_only
from gateway.pairing import AddAnswer, Candidate, PairingError, PairingOptions, PairingSession
from trygg.wire.clock import Clock, parse_ts, system_clock
from trygg.wire.messages import InventoryDevice

EXIT_FAILURE = 2
EXIT_INTERRUPTED = 130
COMMITTED_TIMEOUT_S = 5.0
"""How long ``test-alarm`` waits for the daemon to say it committed the test alarm."""

SubParsers = argparse._SubParsersAction  # what ArgumentParser.add_subparsers returns
StateDirOf = Callable[[argparse.Namespace], Path]


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _fail(command: str, message: str) -> int:
    sys.stderr.write(f"trygg gateway {command}: error: {message}\n")
    return EXIT_FAILURE


def _guarded(command: str, handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (DeviceError, PairingError, BridgeError, ConfigError) as exc:
            return _fail(command, str(exc))
        except PermissionError as exc:
            return _fail(command, f"permission denied: {exc.filename}")
        except KeyboardInterrupt:
            sys.stderr.write(f"trygg gateway {command}: interrupted\n")
            return EXIT_INTERRUPTED

    return run


# --- pair -----------------------------------------------------------------------------------------


def _read_line(prompt: str) -> asyncio.Future[str | None]:
    """A line from stdin without blocking the loop; a daemon thread, so an unanswered prompt
    never keeps the command from ending with its window."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def read() -> None:
        try:
            line: str | None = input(prompt)
        except EOFError:
            line = None
        loop.call_soon_threadsafe(lambda: None if future.done() else future.set_result(line))

    threading.Thread(target=read, name="prompt", daemon=True).start()
    return future


def _prompting(room: str | None) -> Callable[[Candidate, str], Any]:
    async def ask(candidate: Candidate, suggested: str) -> AddAnswer | None:
        reply = await _read_line(f"  Allow-list {candidate.ieee} as {suggested}? [Y/n/name] ")
        if reply is None or reply.strip().lower() in ("n", "no"):
            return None
        name = reply.strip() if reply.strip() and reply.strip().lower() not in ("y", "yes") else ""
        chosen_room = room
        if chosen_room is None:
            chosen_room = ((await _read_line("  Room: ")) or "").strip() or None
        if chosen_room is None:
            return None
        return AddAnswer(name or suggested, chosen_room)

    return ask


def pair_command(state_dir_of: StateDirOf) -> Callable[[argparse.Namespace], int]:
    def pair(args: argparse.Namespace) -> int:
        config = load_config(state_dir_of(args))
        options = PairingOptions(
            minutes=args.minutes,
            room=args.room,
            place=args.place,
            add=args.add,
            resident_ref=args.resident_ref,
        )

        async def main() -> int:
            stop = asyncio.Event()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            ask = _prompting(args.room) if sys.stdin.isatty() and not args.add else None
            session = PairingSession(config, options, _out, ask=ask, stop=stop)
            summary = await session.run()
            return 0 if summary.closed else EXIT_FAILURE

        return asyncio.run(main())

    return pair


# --- devices --------------------------------------------------------------------------------------


def _ago(value: str | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((now - parse_ts(value)).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def state_text(device: InventoryDevice) -> str:
    """``online``, ``silent``, ``not allow-listed (unknown)``, ``mismatch: ...``."""
    if not device.allow_listed:
        return f"not allow-listed ({device.status or 'unknown'})"
    if device.status in ("mismatch", "unsupported"):
        return f"{device.status}: {device.reason or ''}".strip()
    if device.status == "pending":
        return "allow-listed, not heard from yet"
    return device.state


def format_devices(rows: list[InventoryDevice], now: datetime) -> str:
    """The table ``trygg gateway devices`` prints."""
    header = ("NAME", "ROOM", "PLACE", "PROFILE", "BATTERY", "LINK", "LAST SEEN", "STATE")
    table = [header]
    for row in rows:
        table.append(
            (
                row.name,
                row.room or "-",
                row.place or "-",
                row.profile or (row.model or "-"),
                "-" if row.battery is None else f"{row.battery} %",
                "-" if row.linkquality is None else str(row.linkquality),
                _ago(row.last_seen, now),
                state_text(row),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in table
    ]
    if len(table) == 1:
        lines.append("(no devices: pair some with 'trygg gateway pair --minutes 3')")
    return "\n".join(lines)


def collect_devices(config: GatewayConfig) -> list[InventoryDevice]:
    """The allow-list joined with the daemon's inventory (read-only, while it runs)."""
    records = []
    if config.database_file.exists():
        conn = open_read_only(config.database_file)
        try:
            records = read_inventory(conn)
        finally:
            conn.close()
    return inventory_devices(records, config)


def list_command(state_dir_of: StateDirOf, clock: Clock) -> Callable[[argparse.Namespace], int]:
    def list_devices(args: argparse.Namespace) -> int:
        config = load_config(state_dir_of(args))
        rows = collect_devices(config)
        if getattr(args, "json", False):
            _out(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, sort_keys=True))
        else:
            _out(format_devices(rows, clock()))
        return 0

    return list_devices


async def _with_bridge(
    config: GatewayConfig, use: Callable[[BridgeLink | None], Any], *, local_only: bool
) -> Outcome:
    """Run ``use`` with a link to Zigbee2MQTT, or without one for ``--local-only``."""
    if local_only:
        result: Outcome = await use(None)
        return result
    async with open_bridge(config.broker, "devices") as link:
        result = await use(link)
        return result


def _report(outcome: Outcome, done: str) -> int:
    _out(done)
    for note in outcome.notes:
        _out(f"  {note}")
    _out("  The running gateway uses the new allow-list within a second.")
    return 0


def add_command(state_dir_of: StateDirOf) -> Callable[[argparse.Namespace], int]:
    def add(args: argparse.Namespace) -> int:
        state_dir = state_dir_of(args)
        config = load_config(state_dir)
        profiles = load_profiles(config.profiles_dir)
        outcome = asyncio.run(
            _with_bridge(
                config,
                lambda link: devices.add(
                    state_dir,
                    profiles,
                    link,
                    name=args.name,
                    profile=args.profile,
                    room=args.room,
                    place=args.place,
                    ieee=args.ieee,
                    resident_ref=args.resident_ref,
                ),
                local_only=args.local_only or args.ieee is None,
            )
        )
        where = f" in room {args.room}" + (f", {args.place}" if args.place else "")
        return _report(outcome, f"Allow-listed {args.name} ({args.profile}){where}.")

    return add


def remove_command(state_dir_of: StateDirOf) -> Callable[[argparse.Namespace], int]:
    def remove(args: argparse.Namespace) -> int:
        state_dir = state_dir_of(args)
        config = load_config(state_dir)
        outcome = asyncio.run(
            _with_bridge(
                config,
                lambda link: devices.remove(
                    state_dir, link, args.name, keep_paired=args.keep_paired
                ),
                local_only=args.local_only or args.keep_paired,
            )
        )
        return _report(outcome, f"Removed {args.name} from the allow-list.")

    return remove


def rename_command(state_dir_of: StateDirOf) -> Callable[[argparse.Namespace], int]:
    def rename(args: argparse.Namespace) -> int:
        state_dir = state_dir_of(args)
        config = load_config(state_dir)
        outcome = asyncio.run(
            _with_bridge(
                config,
                lambda link: devices.rename(state_dir, link, args.name, args.to),
                local_only=args.local_only,
            )
        )
        return _report(outcome, f"Renamed {args.name} to {args.to}.")

    return rename


def move_command(state_dir_of: StateDirOf) -> Callable[[argparse.Namespace], int]:
    def move(args: argparse.Namespace) -> int:
        state_dir = state_dir_of(args)
        outcome = asyncio.run(devices.move(state_dir, args.name, room=args.room, place=args.place))
        device = devices.find(outcome.config, args.name)
        where = f"room {device.room or '-'}, place {device.place or '-'}"
        return _report(outcome, f"Moved {args.name} to {where}; its pairing is unchanged.")

    return move


# --- test-alarm -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestAlarmOutcome:
    """What the daemon answered last, and the command's own end-to-end time."""

    __test__ = False

    status: str
    answer: dict[str, Any]
    elapsed_ms: int | None


async def request_test_alarm(
    config: GatewayConfig,
    emit: Callable[[str], None],
    *,
    receipt_timeout_s: int = 30,
    committed_timeout_s: float = COMMITTED_TIMEOUT_S,
) -> TestAlarmOutcome:
    """Ask the running daemon for a test alarm and wait for the centre's receipt."""
    request_id = secrets.token_urlsafe(12)
    broker = config.broker
    answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_other(topic: str, payload: bytes) -> None:
        if topic == result_topic(request_id):
            with contextlib.suppress(ValueError):
                answer = json.loads(payload)
                if isinstance(answer, dict):
                    answers.put_nowait(answer)

    async with open_bridge(
        broker, "test-alarm", extra_topics=(result_topic(request_id),), on_other=on_other
    ) as link:
        loop = asyncio.get_running_loop()
        started = loop.time()
        request = {"request_id": request_id, "timeout_s": receipt_timeout_s}
        await link.client.publish(TEST_ALARM_REQUEST_TOPIC, json.dumps(request), qos=1)
        timeout = committed_timeout_s
        while True:
            try:
                async with asyncio.timeout(timeout):
                    answer = await answers.get()
            except TimeoutError:
                if timeout == committed_timeout_s:
                    raise BridgeError(
                        "the gateway daemon did not answer the test-alarm request within "
                        f"{committed_timeout_s:g} s: is 'trygg gateway run' running?"
                    ) from None
                raise BridgeError(
                    "the gateway daemon committed the test alarm but gave no result in time"
                ) from None
            status = str(answer.get("status"))
            if status == "committed":
                emit(
                    f"Test alarm committed by the gateway as event {answer.get('event_id')}; "
                    "waiting for the centre's receipt..."
                )
                timeout = (
                    receipt_timeout_s + committed_timeout_s
                )  # the daemon says when it gives up
                continue
            elapsed = round((loop.time() - started) * 1000)
            return TestAlarmOutcome(status, answer, elapsed)


def test_alarm_command(state_dir_of: StateDirOf) -> Callable[[argparse.Namespace], int]:
    def test_alarm(args: argparse.Namespace) -> int:
        config = load_config(state_dir_of(args))
        try:
            outcome = asyncio.run(request_test_alarm(config, _out, receipt_timeout_s=args.timeout))
        except aiomqtt.MqttError as exc:
            raise BridgeError(f"the connection to the home's broker broke: {exc}") from exc
        answer = outcome.answer
        if outcome.status == "delivered":
            _out(
                f"The centre has the test alarm: receipt {answer.get('receipt')}, round trip "
                f"{answer.get('rtt_ms')} ms (gateway commit to verified receipt); "
                f"{outcome.elapsed_ms} ms from this command."
            )
            _out("The centre shows it as a test alarm, resolved at once; no operator is paged.")
            return 0
        reason = answer.get("reason") or outcome.status
        return _fail("test-alarm", f"{outcome.status}: {reason}")

    return test_alarm


# --- registration ---------------------------------------------------------------------------------


def add_installer_commands(
    commands: SubParsers[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    state_dir_of: StateDirOf,
    clock: Clock = system_clock,
) -> None:
    """Add ``pair``, ``devices`` and ``test-alarm`` to ``trygg gateway``."""
    pair = commands.add_parser(
        "pair", parents=[common], help="open a time-limited Zigbee pairing window"
    )
    pair.add_argument("--minutes", type=int, default=3, help="window length, 1 to 10 (default 3)")
    pair.add_argument("--room", default=None, help="room of the devices paired now")
    pair.add_argument("--place", default=None, help="place (home, or a short-term stay)")
    pair.add_argument("--resident-ref", default=None, help="resident the devices belong to")
    pair.add_argument(
        "--add", action="store_true", help="allow-list each matched device (needs --room)"
    )
    pair.set_defaults(handler=_guarded("pair", pair_command(state_dir_of)))

    listing = commands.add_parser(
        "devices", parents=[common], help="list and manage the allow-listed devices"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_guarded("devices", list_command(state_dir_of, clock)))
    actions = listing.add_subparsers(dest="devices_command", required=False)

    add = actions.add_parser("add", parents=[common], help="allow-list a device")
    add.add_argument("--name", required=True, help="e.g. bedroom/button")
    add.add_argument("--profile", required=True, help="profile id, e.g. aqara.WXKG11LM")
    add.add_argument("--room", required=True)
    add.add_argument("--place", default=None)
    add.add_argument("--ieee", default=None, help="IEEE address, e.g. 0x00158d00045a1b2c")
    add.add_argument("--resident-ref", default=None)
    add.add_argument("--local-only", action="store_true", help="do not contact Zigbee2MQTT")
    add.set_defaults(handler=_guarded("devices add", add_command(state_dir_of)))

    remove = actions.add_parser("remove", parents=[common], help="take a device off the list")
    remove.add_argument("--name", required=True)
    remove.add_argument("--keep-paired", action="store_true", help="leave it in the Zigbee network")
    remove.add_argument("--local-only", action="store_true", help="do not contact Zigbee2MQTT")
    remove.set_defaults(handler=_guarded("devices remove", remove_command(state_dir_of)))

    rename = actions.add_parser(
        "rename", parents=[common], help="rename a device (in Zigbee2MQTT too)"
    )
    rename.add_argument("--name", required=True)
    rename.add_argument("--to", required=True)
    rename.add_argument("--local-only", action="store_true", help="do not contact Zigbee2MQTT")
    rename.set_defaults(handler=_guarded("devices rename", rename_command(state_dir_of)))

    move = actions.add_parser(
        "move", parents=[common], help="put a device in another room or place"
    )
    move.add_argument("--name", required=True)
    move.add_argument("--room", default=None)
    move.add_argument("--place", default=None)
    move.set_defaults(handler=_guarded("devices move", move_command(state_dir_of)))

    test = commands.add_parser(
        "test-alarm", parents=[common], help="send a test alarm through the whole chain"
    )
    test.add_argument(
        "--timeout",
        type=int,
        default=30,
        choices=range(1, 121),
        metavar="1..120",
        help="seconds to wait for the centre's receipt (default 30)",
    )
    test.set_defaults(handler=_guarded("test-alarm", test_alarm_command(state_dir_of)))
