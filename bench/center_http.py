"""Benchmark: the centre's verified ingest over HTTPS, under uvicorn, in envelopes per second.

Run from the repository root:

    .venv/bin/python -m bench.center_http [--events 10000] [--concurrency 4] [--repeat 3]

For each database (SQLite file; PostgreSQL in a temporary cluster with fsync on) and each
worker count (``trygg center serve --workers N``), a real centre starts with a private CA
and verified TLS. ``--concurrency`` gateways are enrolled through ``POST /v1/enrol``; each
sends its pre-signed batches of ``--batch`` measurement events one after another (a gateway
never has two batches in flight), all gateways at once, from one asyncio client over
keep-alive HTTPS. Every event must come back ``accepted``; the first answer of each run is
verified with the centre's receipt key. The client runs on the same two cores as the
centre (and PostgreSQL), so the figures are what this one machine does end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp

import httpx

from bench.probes import cpu_seconds, poll_until
from bench.signing import SigningGateway, batch_body, enrol_over_https, issue_codes
from bench.stats import Report, emit, progress
from response_center.db.engine import make_engine
from trygg.devtools.postgres import TempPostgres, start_temp_postgres
from trygg.localsite import HOME, MUNICIPALITY, LocalSite, discard, forward_to_stderr
from trygg.wire.jws import public_key_from_b64url
from trygg.wire.receipt import verify_receipts

_JSON = {"content-type": "application/json"}


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (uvicorn's workers), as far as they live."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(process_tree_cpu(int(child)) for child in children)
    return total


async def send_all(
    site: LocalSite, bodies: dict[str, list[bytes]], centre_key: str
) -> tuple[int, float]:
    """Every gateway sends its batches in turn, all gateways at once; (accepted, seconds)."""
    verify = ssl.create_default_context(cafile=str(site.ca_file))
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(
        base_url=site.center_url, verify=verify, limits=limits, timeout=120.0
    ) as client:
        # One small request per gateway first, so TLS handshakes are not in the figure.
        await asyncio.gather(*(client.get("/healthz") for _ in bodies))
        checked = False

        async def gateway(mine: list[bytes]) -> int:
            nonlocal checked
            accepted = 0
            for body in mine:
                answer = await client.post("/v1/events", content=body, headers=_JSON)
                if answer.status_code != 200:
                    raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")
                parsed = json.loads(answer.content)
                if not checked:
                    checked = True
                    verify_receipts(parsed, public_key_from_b64url(centre_key))
                accepted += sum(r["status"] == "accepted" for r in parsed["receipts"])
            return accepted

        started = time.perf_counter()
        counts = await asyncio.gather(*(gateway(mine) for mine in bodies.values()))
        return sum(counts), time.perf_counter() - started


def wait_until_serving(site: LocalSite) -> None:
    """With ``--workers N`` uvicorn's parent logs "running" before any worker listens."""
    verify = ssl.create_default_context(cafile=str(site.ca_file))
    with httpx.Client(base_url=site.center_url, verify=verify, timeout=5.0) as client:

        def answered() -> bool | None:
            try:
                return client.get("/healthz").status_code == 200 or None
            except httpx.TransportError:
                return None

        poll_until(answered, timeout_s=60.0, interval_s=0.02, what="the centre's /healthz")


@contextmanager
def centre(
    args: argparse.Namespace, workdir: Path, database_url: str, workers: int
) -> Iterator[LocalSite]:
    site = LocalSite(
        workdir,
        database_url=database_url,
        center_args=["--workers", str(workers)],
        sink=forward_to_stderr if args.verbose else discard,
    )
    try:
        site.start_center()
        wait_until_serving(site)
        yield site
    finally:
        site.stop()


def one_config(
    args: argparse.Namespace, report: Report, workdir: Path, database: str, url: str, workers: int
) -> None:
    label = f"{database}, {workers} worker{'s' if workers > 1 else ''}"
    target = "≥ 5,000" if database == "PostgreSQL" else ""
    rate = report.figure(f"verified ingest over HTTPS, {label}", "envelopes/s", target)
    cpu = report.figure(f"  centre CPU per 1,000 envelopes, {label}", "CPU s", "", "lower")
    with centre(args, workdir, url, workers) as site:
        engine = make_engine(site.database_url)
        try:
            codes = issue_codes(engine, MUNICIPALITY[0], HOME[0], args.concurrency)
        finally:
            engine.dispose()
        enrolled = enrol_over_https(site.center_url, str(site.ca_file), codes)
        gateways: list[SigningGateway] = [gateway for gateway, _ in enrolled]
        centre_key = enrolled[0][1].center_public_key
        per_gateway = max(1, args.events // (args.batch * args.concurrency))
        for run_no in range(1, args.repeat + 1):
            now = datetime.now(UTC)
            bodies = {
                g.gateway_id: [
                    batch_body(g.measurements(args.batch, now)) for _ in range(per_gateway)
                ]
                for g in gateways
            }
            assert site.center is not None
            cpu_before = process_tree_cpu(site.center.pid)
            accepted, seconds = asyncio.run(send_all(site, bodies, centre_key))
            cpu_used = process_tree_cpu(site.center.pid) - cpu_before
            total = per_gateway * args.batch * args.concurrency
            if accepted != total:
                raise RuntimeError(f"{label}: {accepted} of {total} events accepted")
            rate.add(total / seconds)
            cpu.add(cpu_used * 1000 / total)
            progress(f"centre over HTTPS, {label}, run {run_no}: {total / seconds:,.0f}/s")


def run(args: argparse.Namespace) -> Report:
    report = Report(
        f"centre verified ingest over HTTPS (uvicorn, TLS), {args.concurrency} gateways at "
        f"once, batches of {args.batch}"
    )
    workdir = Path(mkdtemp(prefix="trygg-bench-http-", dir=args.dir))
    cluster: TempPostgres | None = None
    try:
        for database in args.databases:
            for workers in args.workers:
                if database == "postgresql":
                    if cluster is None:
                        cluster = start_temp_postgres(durable=True)
                    url, name = cluster.create_database(), "PostgreSQL"
                else:
                    url, name = "", "SQLite"
                one_config(args, report, workdir / f"{database}-{workers}", name, url, workers)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    events = max(1, args.events // (args.batch * args.concurrency)) * args.batch
    report.note(
        f"{events * args.concurrency:,} events per run; PostgreSQL with fsync and synchronous "
        "commit on; SQLite WAL with synchronous=FULL; centre CPU counts uvicorn's parent and "
        "workers, not PostgreSQL's backends"
    )
    load = os.getloadavg()
    report.note(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return report


def add_arguments(parse: argparse.ArgumentParser) -> None:
    parse.add_argument("--events", type=int, default=6_000, help="events per run")
    parse.add_argument("--batch", type=int, default=250, help="events per batch (max 500)")
    parse.add_argument("--concurrency", type=int, default=4, help="gateways sending at once")
    parse.add_argument("--repeat", type=int, default=3)
    parse.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parse.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parse.add_argument("--dir", type=Path, default=None, help="where the centre's files go")
    parse.add_argument("--verbose", action="store_true", help="echo the centre's log")
    parse.add_argument("--json", type=Path, default=None, help="also write the figures here")


def main(argv: list[str] | None = None) -> None:
    parse = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_arguments(parse)
    args = parse.parse_args(argv)
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
