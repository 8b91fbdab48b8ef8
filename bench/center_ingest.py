"""Benchmark: the centre's verified ingest in process, on PostgreSQL, in envelopes per second.

Run from the repository root:

    .venv/bin/python -m bench.center_ingest [--batches 20] [--processes 2] [--repeat 3]

It starts a temporary PostgreSQL cluster (fsync on unless ``--no-fsync``), enrols one
gateway per worker process, pre-signs batches of 500 measurement events, and times
``ingest()`` (parse, verify, store once, sign receipts) in worker processes, each with its
own engine, as uvicorn workers would run it, but without HTTP and TLS. Compare with
``bench.center_http`` to see what the HTTP layer costs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp

from bench.signing import SigningGateway, batch_body, create_bench_home, issue_codes
from bench.stats import Report, emit, progress
from response_center.context import CenterContext, load_receipt_key
from response_center.db.engine import make_engine, migrate
from response_center.enrolment import enrol
from response_center.ingest import ingest
from response_center.settings import CenterSettings
from trygg.devtools.postgres import start_temp_postgres
from trygg.wire.clock import system_clock

BATCH = 500
MUNICIPALITY, HOME = "0301", "H-1"


def _context(settings: CenterSettings) -> CenterContext:
    return CenterContext(
        settings,
        make_engine(settings.database_url),
        system_clock,
        load_receipt_key(settings.receipt_key_file),
    )


def _prepare(settings: CenterSettings, gateways: int) -> list[SigningGateway]:
    """Enrol ``gateways`` gateways in process (the same ``enrol`` the endpoint runs)."""
    migrate(settings.database_url)
    ctx = _context(settings)
    try:
        create_bench_home(ctx.engine, MUNICIPALITY, HOME)
        enrolled = []
        for code in issue_codes(ctx.engine, MUNICIPALITY, HOME, gateways):
            gateway = SigningGateway()
            answer = enrol(ctx, gateway.enrolment_request(code), None)
            gateway.gateway_id = answer.gateway_id
            enrolled.append(gateway)
        return enrolled
    finally:
        ctx.engine.dispose()


def _worker(settings: CenterSettings, bodies: list[bytes], start: float) -> int:
    ctx = _context(settings)
    while time.time() < start:  # every process starts at the same moment
        time.sleep(0.001)
    stored = 0
    for body in bodies:
        stored += sum(r.status == "accepted" for r in ingest(ctx, body, "127.0.0.1"))
    ctx.engine.dispose()
    return stored


def run(args: argparse.Namespace) -> Report:
    report = Report(
        f"centre ingest in process, PostgreSQL (fsync {'off' if args.no_fsync else 'on'}), "
        f"{args.processes} process(es), batches of {BATCH}"
    )
    rate = report.figure("verified ingest, in process", "envelopes/s", "≥ 5,000 (over HTTPS)")
    cluster = start_temp_postgres(durable=not args.no_fsync)
    state = Path(mkdtemp(prefix="trygg-bench-"))
    try:
        settings = CenterSettings(
            state_dir=state, database_url=cluster.create_database(), supervisor_enabled=False
        )
        gateways = _prepare(settings, args.processes)
        for run_no in range(1, args.repeat + 1):
            now = datetime.now(UTC)
            bodies = [
                [batch_body(g.measurements(BATCH, now)) for _ in range(args.batches)]
                for g in gateways
            ]
            start = time.time() + 0.5
            with multiprocessing.Pool(args.processes) as pool:
                stored = sum(pool.starmap(_worker, [(settings, mine, start) for mine in bodies]))
                elapsed = time.time() - start
            total = args.processes * args.batches * BATCH
            if stored != total:
                raise RuntimeError(f"only {stored} of {total} events were accepted")
            rate.add(total / elapsed)
            progress(f"centre ingest run {run_no}: {total / elapsed:,.0f} envelopes/s")
        report.note(f"{args.batches} batches of {BATCH} per process per run; all accepted")
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
    return report


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parse.add_argument("--batches", type=int, default=20, help="batches per process per run")
    parse.add_argument("--processes", type=int, default=2)
    parse.add_argument("--repeat", type=int, default=3)
    parse.add_argument("--no-fsync", action="store_true", help="PostgreSQL as the tests run it")
    parse.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parse


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
