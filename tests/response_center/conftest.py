"""Response-centre fixtures: every test runs against SQLite and a temporary PostgreSQL.

The PostgreSQL cluster is started once per session on a free port (never the machine's own
server on 5432); each test gets a fresh database, and a fresh SQLite file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from response_center import admin
from response_center.app import create_app
from response_center.auth import Role
from response_center.context import CenterContext
from response_center.settings import CenterSettings
from tests.response_center.helpers import FAST_HASHER, PASSWORD, FakeClock, FakeGateway
from tests.support.postgres import TempPostgres, start_temp_postgres

BASE_URL = "https://testserver"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[TempPostgres]:
    cluster = start_temp_postgres()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def center_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'center.sqlite'}"
    cluster: TempPostgres = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(request: pytest.FixtureRequest, center_db_url: str, tmp_path: Path) -> CenterSettings:
    marker = request.node.get_closest_marker("center_settings")
    overrides = dict(marker.kwargs) if marker else {}
    values = {
        "state_dir": tmp_path / "state",
        "database_url": center_db_url,
        "supervisor_enabled": False,
        **overrides,
    }
    return CenterSettings.model_validate(values)


@dataclass
class Center:
    """A running centre (lifespan entered) and what the tests reach into."""

    app: FastAPI
    ctx: CenterContext
    clock: FakeClock

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=BASE_URL,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
async def center(settings: CenterSettings, clock: FakeClock) -> AsyncIterator[Center]:
    app = create_app(settings, clock)
    async with app.router.lifespan_context(app):
        ctx = app.state.ctx
        assert isinstance(ctx, CenterContext)
        yield Center(app, ctx, clock)


@pytest.fixture
async def client(center: Center) -> AsyncIterator[httpx.AsyncClient]:
    async with center.client() as c:
        yield c


@pytest.fixture
def world(center: Center) -> Center:
    """Two municipalities with a home each, a resident, and a user of every role."""
    with center.ctx.engine.begin() as conn:
        admin.create_municipality(conn, "0301", "Oslo", clock=center.clock)
        admin.create_municipality(conn, "4601", "Bergen", clock=center.clock)
        admin.create_home(conn, "0301", "H-1", "Storgata 1, 0155 Oslo", clock=center.clock)
        admin.create_home(conn, "4601", "B-1", "Bryggen 2, 5003 Bergen", clock=center.clock)
        admin.create_resident(conn, "0301", "H-1", "Kari Nordmann", "res-1", clock=center.clock)
        admin.create_resident(conn, "4601", "B-1", "Ola Nordmann", "res-9", clock=center.clock)
        users: list[tuple[str, Role, list[str]]] = [
            ("olga", "operator", ["0301"]),
            ("nina", "nurse", ["0301"]),
            ("ivar", "installer", ["0301"]),
            ("ada", "admin", ["0301", "4601"]),
            ("bjorn", "operator", ["4601"]),
        ]
        for name, role, scope in users:
            admin.create_user(
                conn, name, PASSWORD, role, scope, hasher=FAST_HASHER, clock=center.clock
            )
    return center


async def enrol_gateway(
    center: Center, client: httpx.AsyncClient, municipality: str = "0301", home: str = "H-1"
) -> FakeGateway:
    with center.ctx.engine.begin() as conn:
        code = admin.create_enrolment_code(
            conn, municipality, home, timedelta(hours=1), "ivar", center.clock
        )
    gateway = FakeGateway(center.clock)
    answer = await client.post(
        "/v1/enrol",
        json={"code": code, "public_key": gateway.public_key, "kid": gateway.kid},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    gateway.gateway_id = body["gateway_id"]
    gateway.center_public_key = body["center_public_key"]
    return gateway


@pytest.fixture
async def gateway(world: Center, client: httpx.AsyncClient) -> FakeGateway:
    return await enrol_gateway(world, client)


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Bearer headers for ``username`` (API-style login)."""
    answer = await client.post(
        "/v1/session", json={"username": username, "password": PASSWORD, "client": "api"}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "center_settings(**overrides): CenterSettings fields for this test's centre"
    )
