"""Users, sessions and roles: who may see and do what, in which municipalities.

Sessions are random tokens stored only as SHA-256 hashes; a browser carries the token in an
HttpOnly, Secure, SameSite=Strict cookie and must echo the CSRF token on every change; an API
client sends it as ``Authorization: Bearer``. Login failures are throttled per username and
source address in the database, so every worker sees the same count.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, and_, case, delete, insert, select, update

from response_center.audit import AuditEntry, SecurityEvent, record_audit, record_security_event
from response_center.context import CenterContext, client_ip, get_ctx
from response_center.db.dialect import upsert
from response_center.db.schema import (
    login_throttle,
    municipalities,
    sessions,
    user_municipalities,
    users,
)
from response_center.errors import ApiError
from response_center.web import json_object, validate
from trygg.wire.clock import format_ts

log = logging.getLogger("trygg.center.auth")

Role = Literal["operator", "nurse", "installer", "admin"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"

DEFAULT_HASHER = PasswordHasher()
"""argon2id, RFC 9106 low-memory profile (64 MiB, t=3): memory-hard as Normen asks."""

_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$oHpcPwPQnvhJNF2ycYGUvw"
    "$5HV+Wn1fvTVHWt1a9lgBHChB4Kxg8q/AdvGU7XVtz0Q"
)
"""Verified against when the user does not exist, so a miss costs what a hit costs."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    return hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Check a password against its hash; the hash's own parameters set the cost."""
    try:
        return bool(DEFAULT_HASHER.verify(stored_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user behind a request."""

    user_id: int
    username: str
    role: str
    municipality_ids: frozenset[int]
    session_id: int
    via_cookie: bool
    csrf_hash: str = field(default="", repr=False)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    client: Literal["browser", "api"] = Field(
        default="browser",
        description="api: answer with the token in the body instead of setting a cookie",
    )


# --- throttling -------------------------------------------------------------------------


def _throttle_key(username: str, ip: str | None) -> dict[str, str]:
    return {"username": username[:64], "source_ip": (ip or "-")[:64]}


def locked_until(conn: Connection, username: str, ip: str | None, now: datetime) -> datetime | None:
    key = _throttle_key(username, ip)
    row = conn.execute(
        select(login_throttle.c.locked_until).where(
            login_throttle.c.username == key["username"],
            login_throttle.c.source_ip == key["source_ip"],
        )
    ).first()
    if row is None or row.locked_until is None or row.locked_until <= now:
        return None
    until: datetime = row.locked_until
    return until


def register_failure(
    conn: Connection, username: str, ip: str | None, now: datetime, ctx: CenterContext
) -> datetime | None:
    """Count one failed login; return the lock's end when this failure locks the account."""
    settings = ctx.settings
    key = _throttle_key(username, ip)
    window_start = now - timedelta(seconds=settings.login_failure_window_s)
    stmt = upsert(
        conn,
        login_throttle,
        ["username", "source_ip"],
        lambda excluded: {
            "failures": _case_fresh(window_start, 1, login_throttle.c.failures + 1),
            "window_started_at": _case_fresh(
                window_start, excluded.window_started_at, login_throttle.c.window_started_at
            ),
        },
    )
    conn.execute(stmt, {**key, "failures": 1, "window_started_at": now, "locked_until": None})
    failures = conn.execute(
        select(login_throttle.c.failures).where(
            login_throttle.c.username == key["username"],
            login_throttle.c.source_ip == key["source_ip"],
        )
    ).scalar_one()
    if failures < settings.login_max_failures:
        return None
    until = now + timedelta(seconds=settings.login_lockout_s)
    conn.execute(
        update(login_throttle)
        .where(
            login_throttle.c.username == key["username"],
            login_throttle.c.source_ip == key["source_ip"],
        )
        .values(locked_until=until, failures=0, window_started_at=now)
    )
    return until


def _case_fresh(window_start: datetime, fresh: Any, ongoing: Any) -> Any:
    """``fresh`` when the stored failure window began before ``window_start``."""
    return case((login_throttle.c.window_started_at < window_start, fresh), else_=ongoing)


def clear_failures(conn: Connection, username: str, ip: str | None) -> None:
    key = _throttle_key(username, ip)
    conn.execute(
        delete(login_throttle).where(
            login_throttle.c.username == key["username"],
            login_throttle.c.source_ip == key["source_ip"],
        )
    )


# --- sessions ---------------------------------------------------------------------------


def _municipality_ids(conn: Connection, user_id: int) -> frozenset[int]:
    rows = conn.execute(
        select(user_municipalities.c.municipality_id).where(
            user_municipalities.c.user_id == user_id
        )
    )
    return frozenset(int(r[0]) for r in rows)


def _municipality_codes(conn: Connection, ids: Iterable[int]) -> list[str]:
    id_list = list(ids)
    if not id_list:
        return []
    rows = conn.execute(
        select(municipalities.c.code)
        .where(municipalities.c.id.in_(id_list))
        .order_by(municipalities.c.code)
    )
    return [str(r[0]) for r in rows]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "Use 'Authorization: Bearer <session token>'.")
    return token.strip()


def authenticate(request: Request, ctx: CenterContext) -> Principal:
    """The session behind the request's bearer token or cookie, or 401."""
    token = _bearer(request)
    via_cookie = False
    if token is None:
        token = request.cookies.get(ctx.settings.session_cookie)
        via_cookie = token is not None
    if not token or len(token) > 256:
        raise ApiError(401, "unauthenticated", "Log in first.")
    now = ctx.now()
    with ctx.engine.connect() as conn:
        row = conn.execute(
            select(
                sessions.c.id,
                sessions.c.user_id,
                sessions.c.csrf_hash,
                users.c.username,
                users.c.role,
            )
            .select_from(sessions.join(users, sessions.c.user_id == users.c.id))
            .where(
                and_(
                    sessions.c.token_hash == hash_token(token),
                    sessions.c.expires_at > now,
                    users.c.active.is_(True),
                )
            )
        ).first()
        if row is None:
            raise ApiError(401, "session_expired", "The session has ended; log in again.")
        scope = _municipality_ids(conn, row.user_id)
    return Principal(
        user_id=row.user_id,
        username=row.username,
        role=row.role,
        municipality_ids=scope,
        session_id=row.id,
        via_cookie=via_cookie,
        csrf_hash=row.csrf_hash,
    )


def _check_csrf(request: Request, principal: Principal) -> None:
    """Cookie sessions must echo their CSRF token on every state-changing request."""
    if request.method in SAFE_METHODS or not principal.via_cookie:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(hash_token(sent), principal.csrf_hash):
        raise ApiError(
            403, "csrf_failed", f"The {CSRF_HEADER} header is missing or does not match."
        )


def require_role(*roles: Role) -> Callable[[Request], Principal]:
    """A dependency: the authenticated user, if their role is one of ``roles`` (else 403)."""
    allowed = frozenset(roles)

    def dependency(request: Request) -> Principal:
        ctx = get_ctx(request)
        principal = authenticate(request, ctx)
        if principal.role not in allowed:
            raise ApiError(403, "forbidden_role", f"The role {principal.role!r} may not do this.")
        _check_csrf(request, principal)
        return principal

    return dependency


AnyUser = Annotated[Principal, Depends(require_role("operator", "nurse", "installer", "admin"))]

router = APIRouter()


def _failed_login() -> ApiError:
    return ApiError(401, "login_failed", "Wrong username or password.")


def _locked(until: datetime, now: datetime) -> ApiError:
    seconds = max(1, int((until - now).total_seconds()))
    return ApiError(
        429,
        "login_locked",
        f"Too many failed logins; try again in {seconds} seconds.",
        headers={"Retry-After": str(seconds)},
    )


@router.post("/v1/session")
def login(
    request: Request,
    response: Response,
    body: Annotated[dict[str, Any], Depends(json_object)],
) -> dict[str, Any]:
    ctx = get_ctx(request)
    req = validate(LoginRequest, body)
    ip = client_ip(request)
    now = ctx.now()
    with ctx.engine.connect() as conn:
        until = locked_until(conn, req.username, ip, now)
        user = conn.execute(
            select(users.c.id, users.c.password_hash, users.c.role, users.c.active).where(
                users.c.username == req.username
            )
        ).first()
    if until is not None:
        with ctx.engine.begin() as conn:
            record_audit(conn, [AuditEntry(now, req.username, "session.login", "locked")])
        raise _locked(until, now)
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, req.password)
    if not (ok and user is not None and user.active):
        with ctx.engine.begin() as conn:
            locked = register_failure(conn, req.username, ip, now, ctx)
            record_audit(conn, [AuditEntry(now, req.username, "session.login", "denied")])
            if locked is not None:
                record_security_event(
                    conn, SecurityEvent(now, "login_locked", None, ip, f"user {req.username}")
                )
        raise _failed_login()
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=ctx.settings.session_ttl_s)
    with ctx.engine.begin() as conn:
        clear_failures(conn, req.username, ip)
        conn.execute(
            delete(sessions).where(sessions.c.user_id == user.id, sessions.c.expires_at <= now)
        )
        conn.execute(
            insert(sessions).values(
                token_hash=hash_token(token),
                csrf_hash=hash_token(csrf),
                user_id=user.id,
                created_at=now,
                expires_at=expires,
                source_ip=ip,
            )
        )
        codes = _municipality_codes(conn, _municipality_ids(conn, user.id))
        record_audit(conn, [AuditEntry(now, req.username, "session.login", "ok")])
    answer: dict[str, Any] = {
        "csrf_token": csrf,
        "expires_at": format_ts(expires),
        "user": {"username": req.username, "role": user.role, "municipalities": codes},
    }
    if req.client == "api":
        answer["token"] = token
    else:
        response.set_cookie(
            ctx.settings.session_cookie,
            token,
            max_age=ctx.settings.session_ttl_s,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
    return answer


@router.get("/v1/session")
def whoami(request: Request, principal: AnyUser) -> dict[str, Any]:
    ctx = get_ctx(request)
    with ctx.engine.connect() as conn:
        codes = _municipality_codes(conn, principal.municipality_ids)
    return {"username": principal.username, "role": principal.role, "municipalities": codes}


@router.delete("/v1/session", status_code=204)
def logout(request: Request, principal: AnyUser) -> Response:
    ctx = get_ctx(request)
    now = ctx.now()
    with ctx.engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.id == principal.session_id))
        record_audit(conn, [AuditEntry(now, principal.username, "session.logout")])
    response = Response(status_code=204)
    response.delete_cookie(
        ctx.settings.session_cookie, path="/", secure=True, httponly=True, samesite="strict"
    )
    return response
