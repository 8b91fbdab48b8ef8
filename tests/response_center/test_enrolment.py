"""POST /v1/enrol: a one-time, expiring code binds a gateway key to a home."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from response_center import admin
from response_center.db.schema import enrolment_codes, gateways
from response_center.enrolment import hash_code, normalise_code
from tests.response_center.conftest import Center
from tests.response_center.helpers import FakeGateway, count, reason, security_kinds
from trygg.wire.jws import public_key_from_b64url
from trygg.wire.messages import EnrolmentAnswer


def new_code(center: Center, ttl: timedelta = timedelta(hours=24)) -> str:
    with center.ctx.engine.begin() as conn:
        return admin.create_enrolment_code(conn, "0301", "H-1", ttl, "ivar", center.clock)


def request_for(gateway: FakeGateway, code: str) -> dict[str, str]:
    return {"code": code, "public_key": gateway.public_key, "kid": gateway.kid, "hostname": "pi"}


async def test_a_code_enrols_a_gateway_into_its_home(
    world: Center, client: httpx.AsyncClient
) -> None:
    code = new_code(world)
    assert len(code) == 19 and code.count("-") == 3
    gateway = FakeGateway(world.clock)
    answer = await client.post("/v1/enrol", json=request_for(gateway, code.lower()))
    assert answer.status_code == 201, answer.text
    body = EnrolmentAnswer.model_validate(answer.json())
    assert (body.municipality, body.home, body.heartbeat_interval_s) == ("0301", "H-1", 60)
    assert body.gateway_id.startswith("gw-")
    assert body.center_kid == world.ctx.receipt_kid
    assert public_key_from_b64url(body.center_public_key)
    with world.ctx.engine.connect() as conn:
        row = conn.execute(select(gateways)).one()
        stored = conn.execute(select(enrolment_codes)).one()
    assert (row.id, row.kid, row.status, row.hostname) == (
        body.gateway_id,
        gateway.kid,
        "active",
        "pi",
    )
    assert stored.code_hash == hash_code(code) and code not in stored.code_hash
    assert stored.used_by_gateway == body.gateway_id


async def test_an_unknown_code_is_refused_with_a_clear_reason(
    world: Center, client: httpx.AsyncClient
) -> None:
    answer = await client.post(
        "/v1/enrol", json=request_for(FakeGateway(world.clock), "AAAA-BBBB-CCCC-DDDD")
    )
    assert answer.status_code == 403
    assert reason(answer) == "code_unknown"
    assert "not known" in answer.json()["detail"]["message"]
    assert count(world.ctx.engine, gateways) == 0
    assert security_kinds(world.ctx.engine) == ["enrol_code_unknown"]


async def test_a_code_works_only_once(world: Center, client: httpx.AsyncClient) -> None:
    code = new_code(world)
    first = await client.post("/v1/enrol", json=request_for(FakeGateway(world.clock), code))
    assert first.status_code == 201
    second = await client.post("/v1/enrol", json=request_for(FakeGateway(world.clock), code))
    assert second.status_code == 403
    assert reason(second) == "code_used"
    assert "already been used" in second.json()["detail"]["message"]
    assert count(world.ctx.engine, gateways) == 1
    assert security_kinds(world.ctx.engine) == ["enrol_code_used"]


async def test_two_gateways_racing_with_one_code_one_wins(
    world: Center, client: httpx.AsyncClient
) -> None:
    code = new_code(world)
    answers = await asyncio.gather(
        *(
            client.post("/v1/enrol", json=request_for(FakeGateway(world.clock), code))
            for _ in range(4)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 403, 403, 403]
    assert count(world.ctx.engine, gateways) == 1


async def test_an_expired_code_is_refused(world: Center, client: httpx.AsyncClient) -> None:
    code = new_code(world, ttl=timedelta(hours=1))
    world.clock.advance(3601)
    answer = await client.post("/v1/enrol", json=request_for(FakeGateway(world.clock), code))
    assert answer.status_code == 403
    assert reason(answer) == "code_expired"
    assert "expired" in answer.json()["detail"]["message"]
    assert security_kinds(world.ctx.engine) == ["enrol_code_expired"]


async def test_a_refused_key_does_not_spend_the_code(
    world: Center, client: httpx.AsyncClient
) -> None:
    gateway = FakeGateway(world.clock)
    await client.post("/v1/enrol", json=request_for(gateway, new_code(world)))
    code = new_code(world)
    again = await client.post("/v1/enrol", json=request_for(gateway, code))
    assert again.status_code == 409 and reason(again) == "key_already_enrolled"
    fresh = await client.post("/v1/enrol", json=request_for(FakeGateway(world.clock), code))
    assert fresh.status_code == 201


async def test_the_kid_must_be_the_keys_thumbprint(
    world: Center, client: httpx.AsyncClient
) -> None:
    gateway = FakeGateway(world.clock)
    body = request_for(gateway, new_code(world)) | {"kid": "gw-0001#k1"}
    answer = await client.post("/v1/enrol", json=body)
    assert answer.status_code == 400 and reason(answer) == "kid_mismatch"


@pytest.mark.parametrize(
    "body",
    [
        {"code": "AAAA-BBBB-CCCC-DDDD"},
        {"code": "x", "public_key": "y", "kid": "z"},
        {"code": "AAAA-BBBB-CCCC-DDDD", "public_key": "!" * 43, "kid": "k", "extra": 1},
    ],
)
async def test_malformed_requests_are_400(
    world: Center, client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    answer = await client.post("/v1/enrol", json=body)
    assert answer.status_code == 400
    assert reason(answer) == "malformed"


@pytest.mark.center_settings(enrol_max_failures=3)
async def test_guessing_codes_is_throttled_per_address(
    world: Center, client: httpx.AsyncClient
) -> None:
    gateway = FakeGateway(world.clock)
    code = new_code(world)
    for guess in ("AAAA-AAAA-AAAA-AAAA", "BBBB-BBBB-BBBB-BBBB", "CCCC-CCCC-CCCC-CCCC"):
        wrong = await client.post("/v1/enrol", json=request_for(gateway, guess))
        assert reason(wrong) == "code_unknown"
    blocked = await client.post("/v1/enrol", json=request_for(gateway, code))
    assert blocked.status_code == 429 and reason(blocked) == "too_many_attempts"
    world.clock.advance(15 * 60 + 1)
    later = await client.post("/v1/enrol", json=request_for(gateway, code))
    assert later.status_code == 201


def test_codes_survive_typing_slips() -> None:
    assert normalise_code("abcd-efgh jk0o-1ilz") == "ABCDEFGHJK00111Z"
    assert hash_code("ABCD-EFGH-JK00-111Z") == hash_code("abcd efgh jkoo iliz")
