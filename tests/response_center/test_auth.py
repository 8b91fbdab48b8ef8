"""Sessions: secure cookies with CSRF, bearer tokens, login throttling, hashed secrets."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from response_center.auth import hash_token
from response_center.db.schema import sessions, users
from tests.response_center.conftest import Center, login
from tests.response_center.helpers import PASSWORD, FakeGateway, reason, security_kinds, send


async def browser_login(client: httpx.AsyncClient, username: str) -> str:
    answer = await client.post("/v1/session", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    assert "token" not in answer.json()
    return str(answer.json()["csrf_token"])


async def test_browser_login_sets_a_hardened_cookie(
    world: Center, client: httpx.AsyncClient
) -> None:
    answer = await client.post("/v1/session", json={"username": "olga", "password": PASSWORD})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower()
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    body = answer.json()
    assert body["user"] == {"username": "olga", "role": "operator", "municipalities": ["0301"]}
    with world.ctx.engine.connect() as conn:
        stored = conn.execute(select(sessions.c.token_hash, sessions.c.csrf_hash)).one()
        password_hash = conn.execute(
            select(users.c.password_hash).where(users.c.username == "olga")
        ).scalar_one()
    assert stored.token_hash == hash_token(token) and token not in stored.token_hash
    assert stored.csrf_hash == hash_token(body["csrf_token"])
    assert password_hash.startswith("$argon2id$") and PASSWORD not in password_hash
    me = await client.get("/v1/session")
    assert me.json()["username"] == "olga"


async def test_cookie_sessions_need_the_csrf_header_to_change_anything(
    world: Center, client: httpx.AsyncClient, gateway: FakeGateway
) -> None:
    await send(client, gateway, gateway.alarm())
    csrf = await browser_login(client, "olga")
    (alarm,) = (await client.get("/v1/alarms")).json()["alarms"]
    url = f"/v1/alarms/{alarm['id']}/acknowledge"
    missing = await client.post(url)
    assert missing.status_code == 403 and reason(missing) == "csrf_failed"
    wrong = await client.post(url, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403 and reason(wrong) == "csrf_failed"
    still_new = (await client.get(f"/v1/alarms/{alarm['id']}")).json()
    assert still_new["state"] == "new"
    ok = await client.post(url, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["state"] == "acknowledged"


async def test_logout_ends_the_session(world: Center, client: httpx.AsyncClient) -> None:
    csrf = await browser_login(client, "olga")
    refused = await client.delete("/v1/session")
    assert refused.status_code == 403
    assert (await client.delete("/v1/session", headers={"X-CSRF-Token": csrf})).status_code == 204
    after = await client.get("/v1/alarms")
    assert after.status_code == 401


async def test_bearer_tokens_work_without_csrf(world: Center, client: httpx.AsyncClient) -> None:
    headers = await login(client, "olga")
    assert (await client.get("/v1/session", headers=headers)).status_code == 200
    assert (await client.delete("/v1/session", headers=headers)).status_code == 204
    gone = await client.get("/v1/session", headers=headers)
    assert gone.status_code == 401 and reason(gone) == "session_expired"


async def test_sessions_expire_on_the_clock(world: Center, client: httpx.AsyncClient) -> None:
    headers = await login(client, "olga")
    world.clock.advance(world.ctx.settings.session_ttl_s + 1)
    answer = await client.get("/v1/alarms", headers=headers)
    assert answer.status_code == 401


async def test_wrong_passwords_lock_the_login_for_a_while(
    world: Center, client: httpx.AsyncClient
) -> None:
    wrong = {"username": "olga", "password": "not the password"}
    for _ in range(5):
        answer = await client.post("/v1/session", json=wrong)
        assert answer.status_code == 401 and reason(answer) == "login_failed"
    locked = await client.post("/v1/session", json={"username": "olga", "password": PASSWORD})
    assert locked.status_code == 429 and reason(locked) == "login_locked"
    assert int(locked.headers["retry-after"]) == 300
    assert security_kinds(world.ctx.engine) == ["login_locked"]
    other_user = await client.post("/v1/session", json={"username": "nina", "password": PASSWORD})
    assert other_user.status_code == 200
    world.clock.advance(301)
    assert (
        await client.post("/v1/session", json={"username": "olga", "password": PASSWORD})
    ).status_code == 200


async def test_failures_spread_over_time_do_not_lock(
    world: Center, client: httpx.AsyncClient
) -> None:
    wrong = {"username": "olga", "password": "not the password"}
    for _ in range(8):
        assert (await client.post("/v1/session", json=wrong)).status_code == 401
        world.clock.advance(5 * 60)
    answer = await client.post("/v1/session", json={"username": "olga", "password": PASSWORD})
    assert answer.status_code == 200


async def test_unknown_users_and_wrong_passwords_look_the_same(
    world: Center, client: httpx.AsyncClient
) -> None:
    unknown = await client.post("/v1/session", json={"username": "nobody", "password": "x"})
    wrong = await client.post("/v1/session", json={"username": "olga", "password": "x"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


async def test_login_body_is_validated(world: Center, client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/session", json={"username": "olga"})
    assert answer.status_code == 400 and reason(answer) == "malformed"
    assert "password" in answer.json()["detail"]["message"]
