"""Benchmark: the alarm path of a whole installation, as real processes, TLS on, loopback.

Run from the repository root:

    .venv/bin/python -m bench.alarm_path [--alarms 1000] [--burst 2000] [--drain 100000]

A :class:`~trygg.localsite.LocalSite` is started: the centre under uvicorn with verified
TLS (SQLite, or ``--postgres`` for a temporary PostgreSQL cluster with fsync on), a
mosquitto, and a gateway daemon enrolled with a one-time code. Then, in order:

1. **Alarm latency**: a simulated Zigbee2MQTT button publishes a press (QoS 1, to the home
   broker); the clock stops when the alarm's row is visible in the centre's database,
   polled over a read-only connection every ``--poll-us`` microseconds. The next press is
   published only after that, so this is latency, not queueing. The centre's own
   ``received_at`` (set before its transaction commits, truncated to the ms) gives a
   cross-check that excludes the centre's commit.
2. **Gateway alarm ingest through MQTT**: ``--burst`` presses published as fast as the broker
   takes them; the clock stops when all are committed in the gateway's outbox (polled
   read-only every 2 ms). Once with the centre up (the uplink competes for the CPU) and once
   with it stopped; then the centre restarts and the queued alarms are delivered.
3. **Backlog drain**: the gateway is stopped, ``--drain`` measurements and
   ``--drain-alarms`` alarms (last in the queue) are committed into its outbox, and the
   gateway starts with the centre up. Figures: time until the alarms are stored at the
   centre, and until the outbox has nothing left to deliver.
4. **Gateway memory**: VmRSS and VmHWM of the daemon process after each stage.

At the end every alarm published is checked to be stored at the centre exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp

import aiomqtt

from bench.outbox_ingest import alarm, measurement
from bench.probes import (
    CentreReader,
    GatewayReader,
    LineClock,
    StoredRow,
    cpu_seconds,
    memory_of,
    poll_until,
)
from bench.stats import Report, emit, percentile, progress
from drivers.simulators.zigbee_home import ZigbeeHome
from gateway import ingest_state
from gateway.config import load_config
from gateway.identity import load_enrolment, load_signing_key
from gateway.outbox import Outbox
from trygg.devtools.postgres import TempPostgres, start_temp_postgres
from trygg.localsite import LocalSite, forward_to_stderr

FILL_BATCH = 500
OUTBOX_OPEN = "outbox open:"
STAGE_TIMEOUT_S = 600.0


@dataclass
class Bench:
    """The running site, its readers, and the tally of alarms that must reach the centre."""

    args: argparse.Namespace
    site: LocalSite
    lines: LineClock
    report: Report
    centre: CentreReader
    gateway: GatewayReader
    first_event_id: int
    alarms_sent: int = 0
    stage_notes: list[str] = field(default_factory=list)

    @property
    def broker_port(self) -> int:
        assert self.site.broker is not None
        return self.site.broker.port

    def gateway_memory(self, stage: str) -> None:
        assert self.site.gateway is not None
        memory = memory_of(self.site.gateway.pid)
        self.report.figure(f"gateway VmRSS {stage}", "MiB", "≤ 60", "lower").add(memory.rss_mb)
        progress(f"gateway memory {stage}: RSS {memory.rss_mb:.1f} MiB, HWM {memory.hwm_mb:.1f}")


# --- 1. latency ----------------------------------------------------------------------------


@dataclass
class Latencies:
    """Per alarm, in ms: the whole path, and its parts by the stamps on the stored event."""

    total: list[float] = field(default_factory=list)
    to_gateway: list[float] = field(default_factory=list)
    """publish → the gateway's recorded_at (broker, MQTT delivery, pipeline; before its commit)"""
    gateway_to_centre: list[float] = field(default_factory=list)
    """recorded_at → the centre's received_at (gateway commit, uplink, HTTPS, verify)"""
    centre_store: list[float] = field(default_factory=list)
    """received_at → row visible (the centre's transaction and commit, plus the poll)"""
    received: list[float] = field(default_factory=list)
    """publish → received_at: a cross-check that excludes the centre's own commit"""


async def latency_run(bench: Bench, home: ZigbeeHome, count: int) -> Latencies:
    """``count`` presses, each after the previous one is stored."""
    poll_s = bench.args.poll_us / 1e6
    last = bench.centre.last_event_id()
    out = Latencies()
    for _ in range(count):
        wall = time.time()
        started = time.perf_counter()
        await home.press()
        bench.alarms_sent += 1

        def stored(after: int = last) -> StoredRow | None:
            for row in bench.centre.events_after(after):
                if row.type.startswith("alarm."):
                    return row
            return None

        row = poll_until(stored, timeout_s=30.0, interval_s=poll_s, what="the alarm at the centre")
        total = (time.perf_counter() - started) * 1000
        last = row.id
        recorded = row.recorded_at.timestamp() * 1000
        received = row.received_at.timestamp() * 1000
        out.total.append(total)
        out.to_gateway.append(recorded - wall * 1000)
        out.gateway_to_centre.append(received - recorded)
        out.centre_store.append(wall * 1000 + total - received)
        out.received.append(received - wall * 1000)
    return out


async def measure_latency(bench: Bench) -> None:
    report, args = bench.report, bench.args
    p50 = report.figure("alarm latency p50, publish → stored at centre", "ms", "", "lower")
    p99 = report.figure("alarm latency p99, publish → stored at centre", "ms", "≤ 50", "lower")
    worst = report.figure("alarm latency max, publish → stored at centre", "ms", "", "lower")
    parts = [
        ("to_gateway", "  p50 part: publish → gateway recorded_at"),
        ("gateway_to_centre", "  p50 part: gateway recorded_at → centre received_at"),
        ("centre_store", "  p50 part: centre received_at → stored"),
        ("received", "cross-check p99: publish → centre received_at"),
    ]
    async with aiomqtt.Client("127.0.0.1", bench.broker_port, identifier="bench-home") as client:
        home = ZigbeeHome(client)
        await home.announce()
        await latency_run(bench, home, min(50, args.alarms))  # warm-up: TLS session, caches
        for run_no in range(1, args.repeat + 1):
            got = await latency_run(bench, home, args.alarms)
            p50.add(percentile(got.total, 50))
            p99.add(percentile(got.total, 99))
            worst.add(max(got.total))
            for attribute, name in parts:
                q = 99 if attribute == "received" else 50
                report.figure(name, "ms", "", "lower").add(percentile(getattr(got, attribute), q))
            progress(
                f"latency run {run_no}: p50 {percentile(got.total, 50):.1f} ms, "
                f"p99 {percentile(got.total, 99):.1f} ms over {len(got.total)} alarms"
            )
    report.note(
        f"latency: {args.alarms} alarms per run, one at a time, after {min(50, args.alarms)} "
        f"warm-up presses; stored = row visible to a read-only reader polling every "
        f"{args.poll_us} µs (overestimates by at most one poll interval plus one query); the "
        "parts use the event's recorded_at (gateway) and received_at (centre), each stamped "
        "before that side's commit and truncated to the ms (±1 ms), same machine clock"
    )
    bench.gateway_memory("after the latency runs")


# --- 2. alarm ingest through MQTT ------------------------------------------------------------


async def burst(bench: Bench, count: int) -> tuple[float, float]:
    """Publish ``count`` presses at once; (publish rate, commit rate) in alarms/s."""
    start_row = bench.gateway.last_row_id()
    async with aiomqtt.Client(
        "127.0.0.1", bench.broker_port, identifier="bench-burst", max_inflight_messages=1000
    ) as client:
        home = ZigbeeHome(client)
        started = time.perf_counter()
        await asyncio.gather(*(home.press() for _ in range(count)))
        published = time.perf_counter() - started
        bench.alarms_sent += count
        poll_until(
            lambda: True if bench.gateway.alarms_after(start_row) >= count else None,
            timeout_s=STAGE_TIMEOUT_S,
            interval_s=0.002,
            what=f"{count} alarms in the gateway's outbox",
        )
        committed = time.perf_counter() - started
    return count / published, count / committed


def wait_delivered(bench: Bench, what: str) -> float:
    """Seconds until the gateway's outbox has nothing left to deliver."""
    started = time.perf_counter()
    poll_until(
        lambda: True if bench.gateway.undelivered() == 0 else None,
        timeout_s=STAGE_TIMEOUT_S,
        interval_s=0.01,
        what=what,
    )
    return time.perf_counter() - started


async def measure_bursts(bench: Bench) -> None:
    report, args, site = bench.report, bench.args, bench.site
    up = report.figure("gateway alarm ingest via MQTT, centre up", "alarms/s", "≥ 500")
    for run_no in range(1, args.repeat + 1):
        published, committed = await burst(bench, args.burst)
        up.add(committed)
        report.figure("  broker accepted the presses at", "presses/s").add(published)
        progress(f"burst run {run_no} (centre up): {committed:,.0f} alarms/s committed")
        wait_delivered(bench, "delivery of the burst")

    assert site.center is not None
    await asyncio.to_thread(site.center.stop)
    down = report.figure("gateway alarm ingest via MQTT, centre stopped", "alarms/s", "≥ 500")
    for run_no in range(1, args.repeat + 1):
        _, committed = await burst(bench, args.burst)
        down.add(committed)
        progress(f"burst run {run_no} (centre stopped): {committed:,.0f} alarms/s committed")
        bench.gateway_memory("after a burst")
    queued = bench.gateway.undelivered()
    await asyncio.to_thread(site.center.start)
    # The uplink is backing off; the next alarm wakes it, as it would in a real home.
    async with aiomqtt.Client("127.0.0.1", bench.broker_port, identifier="bench-wake") as client:
        started = time.perf_counter()
        await ZigbeeHome(client).press()
        bench.alarms_sent += 1
    wait_delivered(bench, "delivery of the queued alarms")
    elapsed = time.perf_counter() - started
    report.figure("queued alarms delivered after centre restart", "alarms/s").add(
        (queued + 1) / elapsed
    )
    report.note(
        f"bursts: {args.burst} presses per run published at once (QoS 1); committed = all "
        "alarm rows present in the gateway's outbox (read-only poll every 2 ms); with the "
        f"centre stopped the queue grew to {queued} alarms, delivered after a restart and "
        "one wake-up press"
    )


# --- 3. backlog drain ----------------------------------------------------------------------


async def fill_outbox(site: LocalSite, measurements: int, alarms: int) -> float:
    """Commit the backlog into the stopped gateway's outbox; return the fill rate in msg/s."""
    config = load_config(site.gateway_dir)
    enrolment = load_enrolment(site.gateway_dir)
    assert enrolment is not None
    started = time.perf_counter()
    async with await Outbox.open(
        config.database_file,
        key=load_signing_key(site.gateway_dir),
        gateway_id=enrolment.gateway_id,
        limits=config.outbox,
        migrations=ingest_state.MIGRATIONS,
    ) as outbox:
        done = 0
        while done < measurements:
            size = min(FILL_BATCH, measurements - done)
            now = datetime.now(UTC)
            await outbox.commit([measurement(now) for _ in range(size)])
            done += size
        for _ in range(alarms):  # last in the queue: they must still be delivered first
            await outbox.commit([alarm(datetime.now(UTC))])
    return (measurements + alarms) / (time.perf_counter() - started)


async def drain_once(bench: Bench, run_no: int) -> None:
    args, site, report = bench.args, bench.site, bench.report
    daemon = site.gateway
    assert daemon is not None
    await asyncio.to_thread(daemon.stop)
    progress(f"drain run {run_no}: filling the outbox with {args.drain:,} events")
    fill = await fill_outbox(site, args.drain, args.drain_alarms)
    report.figure("backlog fill, Outbox.commit of 500, one process", "msg/s").add(fill)
    bench.alarms_sent += args.drain_alarms
    marker = bench.centre.last_event_id()
    bench.lines.arm()
    failed: list[BaseException] = []

    def start() -> None:
        try:
            daemon.start()
        except BaseException as exc:  # handed to the polling thread, which raises it
            failed.append(exc)

    assert site.center is not None
    centre_cpu = cpu_seconds(site.center.pid)
    spawned = time.perf_counter()
    starter = threading.Thread(target=start, name="gateway-start")
    starter.start()

    def alarms_stored() -> bool | None:
        if failed:
            raise failed[0]
        if bench.centre.count_events_after(marker, "alarm.") >= args.drain_alarms:
            return True
        return None

    poll_until(
        alarms_stored,
        timeout_s=STAGE_TIMEOUT_S,
        interval_s=0.002,
        what="the backlog's alarms at the centre",
    )
    alarms_at = time.perf_counter()
    starter.join()
    if failed:
        raise failed[0]
    wait_delivered(bench, "the backlog drain")
    drained_at = time.perf_counter()
    per_k = 1000 / (args.drain + args.drain_alarms)
    report.figure("backlog: centre CPU per 1,000 events", "CPU s", "", "lower").add(
        (cpu_seconds(site.center.pid) - centre_cpu) * per_k
    )
    report.figure("backlog: gateway CPU per 1,000 events (incl. start)", "CPU s", "", "lower").add(
        cpu_seconds(daemon.pid) * per_k
    )
    stored = bench.centre.count_events_after(marker)
    if stored < args.drain + args.drain_alarms:
        raise RuntimeError(f"drain: only {stored} events stored at the centre")
    opened = bench.lines.seen.get("open", spawned)
    report.figure("backlog: alarms stored, from gateway start", "s", "≤ 1", "lower").add(
        alarms_at - spawned
    )
    report.figure("backlog: alarms stored, from outbox open", "s", "≤ 1", "lower").add(
        alarms_at - opened
    )
    total_s = drained_at - spawned
    report.figure(f"backlog: {args.drain:,} events drained", "s", "", "lower").add(total_s)
    scaled = total_s * 500_000 / args.drain
    report.figure("backlog: drain time scaled to 500k", "s", "≤ 60", "lower").add(scaled)
    report.figure("backlog: drain rate", "events/s").add(args.drain / total_s)
    progress(
        f"drain run {run_no}: alarms after {alarms_at - spawned:.2f} s, "
        f"{args.drain:,} events in {total_s:.1f} s"
    )
    bench.gateway_memory("after a drain")


async def measure_drain(bench: Bench) -> None:
    for run_no in range(1, bench.args.drain_repeat + 1):
        await drain_once(bench, run_no)
    bench.report.note(
        f"drain: {bench.args.drain:,} measurements then {bench.args.drain_alarms} alarms "
        "committed into the stopped gateway's outbox; clock from the gateway process's spawn "
        "(and from its 'outbox open' log line) with the centre up; drained = no queued or "
        "in-flight row left (read-only poll every 10 ms)"
    )


# --- the whole run ---------------------------------------------------------------------------


def check_exactly_once(bench: Bench) -> None:
    stored = bench.centre.count_events_after(bench.first_event_id, "alarm.")
    if stored != bench.alarms_sent:
        raise RuntimeError(f"{bench.alarms_sent} alarms published, {stored} stored at the centre")
    bench.report.note(f"exactly once: {stored} alarms published, {stored} stored at the centre")


async def stages(bench: Bench) -> None:
    bench.gateway_memory("idle after start")
    if bench.args.alarms > 0:
        await measure_latency(bench)
    if bench.args.burst > 0:
        await measure_bursts(bench)
    if bench.args.drain > 0:
        await measure_drain(bench)
    wait_delivered(bench, "the last deliveries")
    assert bench.site.gateway is not None
    memory = memory_of(bench.site.gateway.pid)
    bench.report.figure("gateway VmRSS, steady at the end", "MiB", "≤ 60", "lower").add(
        memory.rss_mb
    )
    bench.report.figure("gateway VmHWM (peak RSS) at the end", "MiB", "≤ 60", "lower").add(
        memory.hwm_mb
    )
    check_exactly_once(bench)


@contextlib.contextmanager
def installation(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[LocalSite, LineClock]]:
    cluster: TempPostgres | None = start_temp_postgres(durable=True) if args.postgres else None
    lines = LineClock({"open": OUTBOX_OPEN}, echo=forward_to_stderr if args.verbose else None)
    site = LocalSite(
        workdir / "site",
        database_url=cluster.create_database() if cluster is not None else "",
        sink=lines,
    )
    try:
        site.start()
        yield site, lines
    finally:
        site.stop()
        if cluster is not None:
            cluster.stop()


def run(args: argparse.Namespace) -> Report:
    workdir = Path(mkdtemp(prefix="trygg-bench-site-", dir=args.dir))
    database = "PostgreSQL (fsync on)" if args.postgres else "SQLite"
    report = Report(f"alarm path: centre ({database}) + mosquitto + gateway, TLS, loopback")
    try:
        with installation(args, workdir) as (site, lines):
            centre = CentreReader(site.database_url)
            gateway = GatewayReader(site.gateway_dir / "gateway.sqlite")
            try:
                bench = Bench(args, site, lines, report, centre, gateway, centre.last_event_id())
                asyncio.run(stages(bench))
            finally:
                centre.close()
                gateway.close()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    report.note(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return report


def add_arguments(parse: argparse.ArgumentParser) -> None:
    parse.add_argument("--alarms", type=int, default=1000, help="latency alarms per run")
    parse.add_argument("--repeat", type=int, default=3, help="runs of latency and bursts")
    parse.add_argument("--poll-us", type=int, default=100, help="centre poll interval (µs)")
    parse.add_argument("--burst", type=int, default=2000, help="presses per burst run")
    parse.add_argument("--drain", type=int, default=100_000, help="backlog measurements")
    parse.add_argument("--drain-alarms", type=int, default=5)
    parse.add_argument("--drain-repeat", type=int, default=1)
    parse.add_argument("--postgres", action="store_true", help="centre on PostgreSQL")
    parse.add_argument("--dir", type=Path, default=None, help="where the site's files go")
    parse.add_argument("--keep", action="store_true", help="keep the site's files")
    parse.add_argument("--verbose", action="store_true", help="echo the processes' logs")
    parse.add_argument("--json", type=Path, default=None, help="also write the figures here")


def quiet_logs() -> None:
    """Warnings on stderr; SIGTERM unwinds (so the site's processes are stopped too)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # aiomqtt warns once per queued publish when a burst outruns its in-flight window.
    logging.getLogger("aiomqtt").setLevel(logging.ERROR)
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> None:
    parse = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_arguments(parse)
    args = parse.parse_args(argv)
    quiet_logs()
    if args.alarms and args.alarms < 1000:
        progress("note: fewer than 1,000 alarms per run makes p99 a near-maximum")
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
