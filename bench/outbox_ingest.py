"""Benchmark: the gateway outbox's durable ingest rate (``Outbox.commit``), in process.

Run from the repository root:

    .venv/bin/python -m bench.outbox_ingest [--measurements 20000] [--alarms 2000] [--repeat 3]

Each run opens a fresh outbox on disk (``synchronous=FULL``, WAL) and times:

* measurements committed in batches (``--batch`` drafts per ``commit``, one after another);
* measurements committed one draft per ``commit``, one after another (one fsync each);
* alarms committed one draft per ``commit``, ``--concurrency`` callers at once, as MQTT
  ingest does when presses arrive faster than a disk flush (the outbox group-commits them).

Every commit signs its events (Ed25519) and validates them, so the figures include the
crypto. The process is pinned to one CPU (``--cpu``) so "msg/s on one core" means that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.signing import BLOOD_PRESSURE
from bench.stats import Report, emit, progress
from gateway.config import OutboxLimits
from gateway.outbox import EventDraft, Outbox
from trygg.wire.envelope import DeviceRef

T = TypeVar("T")

BUTTON = DeviceRef(id="bedroom/button", profile="aqara.WXKG11LM", room="bedroom")
CUFF = DeviceRef(id="living/bp-cuff", profile="omron.bp", room="living")


def measurement(now: datetime) -> EventDraft:
    return EventDraft(
        event_class="measurement",
        type="measurement.blood_pressure",
        occurred_at=now,
        device=CUFF,
        data=BLOOD_PRESSURE,
        resident_ref="R-0001",
    )


def alarm(now: datetime) -> EventDraft:
    return EventDraft(
        event_class="alarm",
        type="alarm.button",
        occurred_at=now,
        device=BUTTON,
        data={"action": "single"},
        vkp_alert_code="3",
        resident_ref="R-0001",
    )


async def open_outbox(directory: Path, limits: OutboxLimits | None = None) -> Outbox:
    return await Outbox.open(
        directory / "gateway.sqlite",
        key=Ed25519PrivateKey.generate(),
        gateway_id="gw-bench",
        limits=limits,
    )


async def _timed(work: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await work()
    return result, time.perf_counter() - started


async def commit_batched(outbox: Outbox, total: int, batch: int) -> int:
    """``total`` measurements, ``batch`` per commit, each commit awaited before the next."""
    done = 0
    while done < total:
        size = min(batch, total - done)
        now = datetime.now(UTC)
        await outbox.commit([measurement(now) for _ in range(size)])
        done += size
    return done


async def commit_singles(outbox: Outbox, total: int) -> int:
    for _ in range(total):
        await outbox.commit([measurement(datetime.now(UTC))])
    return total


async def commit_concurrent_alarms(outbox: Outbox, total: int, concurrency: int) -> int:
    """``total`` single-alarm commits with at most ``concurrency`` awaiting at any moment."""
    window = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with window:
            await outbox.commit([alarm(datetime.now(UTC))])

    await asyncio.gather(*(one() for _ in range(total)))
    return total


async def one_run(args: argparse.Namespace, report: Report, run_no: int) -> None:
    directory = Path(mkdtemp(prefix="trygg-bench-outbox-", dir=args.dir))
    try:
        async with await open_outbox(directory) as outbox:
            count, secs = await _timed(
                lambda: commit_batched(outbox, args.measurements, args.batch)
            )
            batched = count / secs
            report.figure(
                f"measurements, {args.batch} per commit", "msg/s", "≥ 5,000 on one core"
            ).add(batched)

            before = outbox.transaction_count
            count, secs = await _timed(lambda: commit_singles(outbox, args.singles))
            report.figure("measurements, 1 per commit (sequential)", "msg/s").add(count / secs)
            report.figure("fsync'ed transactions per single commit", "tx").add(
                (outbox.transaction_count - before) / count
            )

            before = outbox.transaction_count
            count, secs = await _timed(
                lambda: commit_concurrent_alarms(outbox, args.alarms, args.concurrency)
            )
            report.figure(
                f"alarms, 1 per commit, {args.concurrency} concurrent", "alarms/s", "≥ 500"
            ).add(count / secs)
            report.figure("alarms per fsync'ed transaction (group commit)", "alarms/tx").add(
                count / max(1, outbox.transaction_count - before)
            )
        progress(f"outbox run {run_no}: batched {batched:,.0f} msg/s")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(args: argparse.Namespace) -> Report:
    cpu = args.cpu if args.cpu is not None and args.cpu >= 0 else None
    pinned = ""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
        pinned = f", pinned to CPU {cpu}"
    report = Report(f"gateway outbox ingest, in process{pinned}, fresh outbox on disk per run")
    try:
        for run_no in range(1, args.repeat + 1):
            asyncio.run(one_run(args, report, run_no))
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
    report.note(
        f"per run: {args.measurements} batched measurements, {args.singles} single commits, "
        f"{args.alarms} alarms; database under {args.dir or 'the system temp dir'}"
    )
    return report


def add_arguments(parse: argparse.ArgumentParser) -> None:
    parse.add_argument("--measurements", type=int, default=10_000)
    parse.add_argument("--batch", type=int, default=100, help="measurements per commit")
    parse.add_argument("--singles", type=int, default=500, help="single-draft commits")
    parse.add_argument("--alarms", type=int, default=2_000)
    parse.add_argument("--concurrency", type=int, default=100, help="alarm commits in flight")
    parse.add_argument("--repeat", type=int, default=3)
    parse.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: do not pin)")
    parse.add_argument("--dir", type=Path, default=None, help="where the outbox files go")
    parse.add_argument("--json", type=Path, default=None, help="also write the figures here")


def main(argv: list[str] | None = None) -> None:
    parse = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_arguments(parse)
    args = parse.parse_args(argv)
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
