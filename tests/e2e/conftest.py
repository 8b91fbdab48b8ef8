"""End-to-end fixtures: a whole installation (centre, broker, gateway) as real processes."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from sqlalchemy import select

from drivers.simulators.zigbee_home import ZigbeeHome
from response_center.db.engine import make_engine
from response_center.db.schema import events
from trygg.localsite import OPERATOR, LocalSite
from trygg.pki import ServerCertificate


class Operator:
    """What an operator's console does over the centre's JSON API: log in, list, act."""

    def __init__(self, site: LocalSite) -> None:
        self.site = site
        self.client = httpx.AsyncClient(
            base_url=site.center_url, verify=ssl.create_default_context(cafile=site.ca_file)
        )
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        answer = await self.client.post(
            "/v1/session",
            json={"username": OPERATOR, "password": self.site.operator_password, "client": "api"},
        )
        assert answer.status_code == 200, answer.text
        self.headers = {"Authorization": f"Bearer {answer.json()['token']}"}

    async def alarms(self, state: str = "open") -> list[dict[str, Any]]:
        answer = await self.client.get(
            "/v1/alarms", params={"state": state, "limit": 500}, headers=self.headers
        )
        assert answer.status_code == 200, answer.text
        alarms: list[dict[str, Any]] = answer.json()["alarms"]
        return alarms

    async def act(self, alarm_id: int, action: str, **body: Any) -> httpx.Response:
        return await self.client.post(
            f"/v1/alarms/{alarm_id}/{action}", json=body, headers=self.headers
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def stored_events(site: LocalSite) -> list[Any]:
    """Every event row the centre holds, straight from its database."""
    engine = make_engine(site.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(events).order_by(events.c.id)))
    finally:
        engine.dispose()


@pytest.fixture
def site(tmp_path: Path, local_tls: ServerCertificate) -> Iterator[LocalSite]:
    """Centre under uvicorn with TLS, a mosquitto, and an enrolled gateway daemon, running."""
    installation = LocalSite(tmp_path / "site")
    try:
        installation.start()
        yield installation
    finally:
        installation.stop()


@pytest.fixture
async def operator(site: LocalSite) -> AsyncIterator[Operator]:
    person = Operator(site)
    await person.login()
    try:
        yield person
    finally:
        await person.aclose()


@pytest.fixture
async def home(site: LocalSite) -> AsyncIterator[ZigbeeHome]:
    """The simulated Zigbee2MQTT home publishing to the site's broker."""
    assert site.broker is not None
    async with aiomqtt.Client("127.0.0.1", site.broker.port, identifier="e2e-home") as client:
        simulated = ZigbeeHome(client)
        await simulated.announce()
        yield simulated
