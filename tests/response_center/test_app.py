"""The app's edges: health, one error shape everywhere, body limits on every endpoint."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.response_center.conftest import Center
from tests.response_center.helpers import reason


async def test_healthz_checks_the_database(center: Center, client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "server_time": "2026-11-22T12:00:00.000Z"}


@pytest.mark.parametrize(
    ("method", "path", "status", "expected"),
    [
        ("GET", "/v1/nowhere", 404, "not_found"),
        ("DELETE", "/v1/events", 405, "method_not_allowed"),
        ("GET", "/docs", 404, "not_found"),
    ],
)
async def test_every_error_has_the_same_shape(
    center: Center, client: httpx.AsyncClient, method: str, path: str, status: int, expected: str
) -> None:
    answer = await client.request(method, path)
    assert answer.status_code == status
    detail = answer.json()["detail"]
    assert set(detail) == {"reason", "message"} and detail["reason"] == expected


async def test_small_endpoints_have_a_small_body_limit(
    center: Center, client: httpx.AsyncClient
) -> None:
    big = b'{"username": "' + b"a" * (center.ctx.settings.max_body_bytes + 1) + b'"}'
    answer = await client.post("/v1/session", content=big)
    assert answer.status_code == 413 and reason(answer) == "body_too_large"


async def test_an_unexpected_error_is_a_500_in_the_same_shape_and_logged(
    center: Center, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    broken = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=center.app, raise_app_exceptions=False),
        base_url="https://testserver",
    )
    center.app.state.ctx = None  # a programming error the handlers must not leak
    with caplog.at_level(logging.ERROR, logger="trygg.center.http"):
        answer = await broken.get("/healthz")
    await broken.aclose()
    assert answer.status_code == 500
    assert answer.json() == {
        "detail": {
            "reason": "internal_error",
            "message": "The centre could not handle this request.",
        }
    }
    assert "unhandled error on GET /healthz" in caplog.text
