"""The response centre as an ASGI app: ``create_app(settings, clock)``.

The lifespan migrates the database, loads (or creates) the receipt key and runs the gateway
supervisor; request handlers get everything through ``app.state.ctx``. Nothing a second
worker would need lives in process memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import text

from response_center import alarms, auth, enrolment, ingest, installations, supervision
from response_center.context import CenterContext, get_ctx, load_receipt_key
from response_center.db.engine import make_engine, migrate
from response_center.errors import ApiError, install_error_handlers
from response_center.settings import CenterSettings
from response_center.supervision import Supervisor
from response_center.web import BodyLimitMiddleware
from trygg.wire.clock import Clock, format_ts, system_clock

log = logging.getLogger("trygg.center")

BATCH_PATHS = frozenset({"/v1/events"})


def create_app(settings: CenterSettings, clock: Clock = system_clock) -> FastAPI:
    """Build the app; its lifespan does the I/O (migrations, key, supervisor)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings.database_url)
        key = await asyncio.to_thread(load_receipt_key, settings.receipt_key_file)
        engine = make_engine(settings.database_url)
        ctx = CenterContext(settings=settings, engine=engine, clock=clock, receipt_key=key)
        app.state.ctx = ctx
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        if settings.supervisor_enabled:
            task = asyncio.create_task(Supervisor(engine, settings, clock).run(stop))
        log.info("response centre ready; receipt key %s", ctx.receipt_kid)
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with suppress(asyncio.CancelledError):
                    await task
            engine.dispose()

    app = FastAPI(
        title="Trygg response centre",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def limit_for(path: str) -> int:
        return settings.max_batch_bytes if path in BATCH_PATHS else settings.max_body_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    install_error_handlers(app)
    for router in (
        ingest.router,
        enrolment.router,
        supervision.router,
        auth.router,
        alarms.router,
        installations.router,
    ):
        app.include_router(router)

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        ctx = get_ctx(request)
        try:
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.error("health check: database unreachable: %s", type(exc).__name__)
            raise ApiError(503, "database_unavailable", "The database cannot be reached.") from exc
        return {"status": "ok", "server_time": format_ts(ctx.now())}

    return app


def app_from_env() -> FastAPI:
    """Factory for multi-worker uvicorn: settings from ``TRYGG_CENTER_*`` variables."""
    return create_app(CenterSettings.from_env())
