"""HTTP edges shared by the routers: the body-size limit and strict JSON body reading.

Bodies are read by our own code, not FastAPI's model binding, so that an oversized body is a
413 even when it arrives chunked, and a bad one is a 400 with our error shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from response_center.errors import ApiError, describe_validation_error
from trygg.wire.canonical import CanonicalJsonError, parse_json_object

log = logging.getLogger("trygg.center.http")

M = TypeVar("M", bound=BaseModel)


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a request body grows past its limit."""


def _too_large_body(limit: int) -> bytes:
    detail = {
        "reason": "body_too_large",
        "message": f"The request body is larger than the limit of {limit} bytes.",
    }
    return json.dumps({"detail": detail}).encode()


class BodyLimitMiddleware:
    """Refuse bodies over the path's limit before they are read into memory (413)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            log.info(
                "refused %s %s: declared body %d > %d",
                scope["method"],
                scope["path"],
                declared,
                limit,
            )
            await _send_413(send, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            log.info("refused %s %s: body grew past %d", scope["method"], scope["path"], limit)
            if not started:
                await _send_413(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = _too_large_body(limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def raw_body(request: Request) -> bytes:
    """The whole body, already bounded by :class:`BodyLimitMiddleware`."""
    return await request.body()


def parse_object(raw: bytes) -> dict[str, Any]:
    """Parse a JSON object body or raise a 400 that says what is wrong with it."""
    if not raw:
        raise ApiError(400, "malformed", "The request body is empty; a JSON object is expected.")
    try:
        return parse_json_object(raw)
    except CanonicalJsonError as exc:
        raise ApiError(400, "malformed", f"The request body is not usable JSON: {exc}") from exc


async def json_object(request: Request) -> dict[str, Any]:
    return parse_object(await request.body())


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "malformed", describe_validation_error(list(exc.errors()))) from exc
