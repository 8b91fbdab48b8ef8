"""Benchmark: verified ingest into PostgreSQL, in envelopes per second (prints figures).

Not a test (pytest does not collect it). Run from the repository root:

    .venv/bin/python -m tests.response_center.bench_ingest [--batches 40] [--processes 2]

It starts a temporary PostgreSQL cluster, enrols gateways, pre-signs batches of 500
measurement events, and times ``ingest()`` (parse, verify, store once, sign receipts) in one
or more worker processes, each with its own engine, as uvicorn workers would run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import mkdtemp

from response_center import admin
from response_center.context import CenterContext, load_receipt_key
from response_center.db.engine import make_engine, migrate
from response_center.enrolment import enrol
from response_center.ingest import ingest
from response_center.settings import CenterSettings
from tests.response_center.helpers import FakeClock, FakeGateway, batch
from tests.support.postgres import start_temp_postgres
from trygg.wire.clock import system_clock
from trygg.wire.messages import EnrolmentRequest

BATCH = 500


def _context(settings: CenterSettings) -> CenterContext:
    return CenterContext(
        settings,
        make_engine(settings.database_url),
        system_clock,
        load_receipt_key(settings.receipt_key_file),
    )


def _prepare(settings: CenterSettings, gateways: int, batches: int) -> list[list[bytes]]:
    """Per gateway, its pre-signed batch bodies."""
    migrate(settings.database_url)
    ctx = _context(settings)
    clock = FakeClock(datetime.now(UTC))
    bodies: list[list[bytes]] = []
    with ctx.engine.begin() as conn:
        admin.create_municipality(conn, "0301", "Oslo")
        admin.create_home(conn, "0301", "H-1", "Storgata 1")
    for _ in range(gateways):
        gateway = FakeGateway(clock)
        with ctx.engine.begin() as conn:
            code = admin.create_enrolment_code(
                conn, "0301", "H-1", timedelta(hours=1), "bench", system_clock
            )
        answer = enrol(
            ctx, EnrolmentRequest(code=code, public_key=gateway.public_key, kid=gateway.kid), None
        )
        gateway.gateway_id = answer.gateway_id
        mine = []
        for _ in range(batches):
            events = [
                gateway.event(data={"systolic": {"m": 120, "e": 0}, "diastolic": {"m": 80, "e": 0}})
                for _ in range(BATCH)
            ]
            mine.append(json.dumps(batch(*events)).encode())
        bodies.append(mine)
    ctx.engine.dispose()
    return bodies


def _worker(settings: CenterSettings, bodies: list[bytes], start: float) -> int:
    ctx = _context(settings)
    while time.time() < start:
        time.sleep(0.001)
    stored = 0
    for body in bodies:
        stored += sum(r.status == "accepted" for r in ingest(ctx, body, "127.0.0.1"))
    ctx.engine.dispose()
    return stored


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20, help="batches per process")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    cluster = start_temp_postgres()
    state = Path(mkdtemp(prefix="trygg-bench-"))
    try:
        settings = CenterSettings(
            state_dir=state, database_url=cluster.create_database(), supervisor_enabled=False
        )
        bodies = _prepare(settings, args.processes, args.batches)
        start = time.time() + 1.0
        with multiprocessing.Pool(args.processes) as pool:
            stored = sum(pool.starmap(_worker, [(settings, mine, start) for mine in bodies]))
            elapsed = time.time() - start
        total = args.processes * args.batches * BATCH
        print(  # a benchmark reports its figures on stdout
            f"{total} envelopes in {elapsed:.2f} s with {args.processes} process(es): "
            f"{total / elapsed:,.0f} envelopes/s ({stored} stored)"
        )
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
