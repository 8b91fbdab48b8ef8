"""The centre under real uvicorn with TLS, in its own process, reached over verified HTTPS."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from response_center import admin
from response_center.db.engine import make_engine, migrate
from tests.response_center.helpers import FakeClock, FakeGateway, batch
from tests.support.ports import free_port
from trygg.pki import ServerCertificate
from trygg.wire.clock import system_clock

REPO = Path(__file__).resolve().parents[2]
READY = b"Uvicorn running on"
STARTUP_TIMEOUT_S = 60


@asynccontextmanager
async def serving(
    database_url: str, state: Path, tls: ServerCertificate, port: int
) -> AsyncIterator[list[bytes]]:
    """Run ``python -m response_center serve`` until uvicorn says it is listening."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "response_center",
        "serve",
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file)),
        *("--database-url", database_url, "--state-dir", str(state)),
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[bytes] = []

    async def until_ready() -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise AssertionError(b"server exited before it was ready:\n" + b"".join(lines))
            lines.append(line)
            if READY in line:
                return

    async def drain() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line)

    try:
        await asyncio.wait_for(until_ready(), STARTUP_TIMEOUT_S)
        drainer = asyncio.create_task(drain())
        yield lines
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    await drainer
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), b"".join(lines).decode(errors="replace")


async def test_gateway_enrols_and_sends_over_verified_https(
    center_db_url: str, tmp_path: Path, local_tls: ServerCertificate
) -> None:
    migrate(center_db_url)
    engine = make_engine(center_db_url)
    with engine.begin() as conn:
        admin.create_municipality(conn, "0301", "Oslo")
        admin.create_home(conn, "0301", "H-1", "Storgata 1")
        code = admin.create_enrolment_code(
            conn, "0301", "H-1", timedelta(hours=1), "t", system_clock
        )
    engine.dispose()
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    verified = ssl.create_default_context(cafile=str(local_tls.ca_file))
    async with serving(center_db_url, tmp_path / "state", local_tls, port) as log:
        async with httpx.AsyncClient(base_url=base, verify=verified) as client:
            health = await client.get("/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            gateway = FakeGateway(FakeClock(system_clock()))
            enrolled = await client.post(
                "/v1/enrol",
                json={"code": code, "public_key": gateway.public_key, "kid": gateway.kid},
            )
            assert enrolled.status_code == 201, enrolled.text
            gateway.gateway_id = enrolled.json()["gateway_id"]
            gateway.center_public_key = enrolled.json()["center_public_key"]
            alarm = gateway.alarm()
            (receipt,) = gateway.receipts(await client.post("/v1/events", json=batch(alarm)))
            assert (receipt.status, receipt.event_id) == ("accepted", alarm.event.event_id)
        async with httpx.AsyncClient(base_url=base) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/healthz")
    text = b"".join(log).decode(errors="replace")
    assert "opened alarms" in text
    assert "Application shutdown complete" in text
