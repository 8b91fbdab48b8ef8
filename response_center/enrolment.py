"""Enrolment: bind a gateway's signing key to a municipality and a home with a one-time code.

An installer gets a code from the centre (``trygg center enroll-code``) and types it into the
gateway. Codes are 16 Crockford base32 characters in four groups (80 random bits), stored
only as a SHA-256 hash, expire, and are spent by one conditional UPDATE, so two gateways
racing with one code cannot both win. Wrong codes are security events, and an address that
keeps guessing is throttled.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from response_center.audit import AuditEntry, SecurityEvent, record_audit, record_security_event
from response_center.context import CenterContext, client_ip, get_ctx
from response_center.db.schema import (
    enrolment_codes,
    gateways,
    homes,
    municipalities,
    security_events,
)
from response_center.errors import ApiError
from response_center.web import json_object, validate
from trygg.wire.clock import Clock
from trygg.wire.jws import JwsError, key_id, public_key_from_b64url
from trygg.wire.messages import EnrolmentAnswer, EnrolmentRequest

log = logging.getLogger("trygg.center.enrolment")

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base32: no I, L, O or U, so a code read aloud or off paper survives."""
GROUPS, GROUP_LEN = 4, 4
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})
CODE_FAILURES = ("code_unknown", "code_used", "code_expired")

MESSAGES = {
    "code_unknown": "This enrolment code is not known. Check it for typing errors, or ask the "
    "response centre for a new code.",
    "code_used": "This enrolment code has already been used by another gateway. Ask the "
    "response centre for a new code.",
    "code_expired": "This enrolment code has expired. Ask the response centre for a new code.",
}


class EnrolmentError(ValueError):
    """A code cannot be issued: unknown municipality or home."""


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    expires_at: datetime


def generate_code() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LEN))
    return "-".join(chars[i : i + GROUP_LEN] for i in range(0, len(chars), GROUP_LEN))


def normalise_code(text: str) -> str:
    """Upper-case, drop separators, read I/L as 1 and O as 0: what the installer meant."""
    cleaned = "".join(ch for ch in text.upper() if ch not in "- \t")
    return cleaned.translate(_CONFUSABLE)


def hash_code(text: str) -> str:
    return hashlib.sha256(normalise_code(text).encode()).hexdigest()


def _home_ids(conn: Connection, municipality: str, home: str) -> tuple[int, int]:
    row = conn.execute(
        select(municipalities.c.id, homes.c.id.label("home_id"))
        .select_from(municipalities.join(homes, homes.c.municipality_id == municipalities.c.id))
        .where(municipalities.c.code == municipality, homes.c.ref == home)
    ).first()
    if row is None:
        raise EnrolmentError(f"no home {home!r} in municipality {municipality!r}")
    return int(row.id), int(row.home_id)


def issue_enrolment_code(
    conn: Connection,
    municipality: str,
    home: str,
    ttl: timedelta,
    created_by: str,
    clock: Clock,
) -> IssuedCode:
    """Create a one-time code for ``home``; only its hash is stored."""
    if ttl <= timedelta(0):
        raise EnrolmentError("the code's lifetime must be positive")
    municipality_id, home_id = _home_ids(conn, municipality, home)
    now = clock()
    code = generate_code()
    conn.execute(
        insert(enrolment_codes).values(
            code_hash=hash_code(code),
            municipality_id=municipality_id,
            home_id=home_id,
            created_by=created_by,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    record_audit(
        conn,
        [
            AuditEntry(
                now,
                created_by,
                "enrolment_code.create",
                municipality_id=municipality_id,
                home_id=home_id,
            )
        ],
    )
    return IssuedCode(code, now + ttl)


def create_enrolment_code(
    conn: Connection,
    municipality: str,
    home: str,
    ttl: timedelta,
    created_by: str,
    clock: Clock,
) -> str:
    """The code as a string (see :func:`issue_enrolment_code` for its expiry too)."""
    return issue_enrolment_code(conn, municipality, home, ttl, created_by, clock).code


def new_gateway_id() -> str:
    return "gw-" + secrets.token_hex(5)


def _code_failure(conn: Connection, code_hash: str) -> str:
    row = conn.execute(
        select(enrolment_codes.c.used_at, enrolment_codes.c.expires_at).where(
            enrolment_codes.c.code_hash == code_hash
        )
    ).first()
    if row is None:
        return "code_unknown"
    if row.used_at is not None:
        return "code_used"
    return "code_expired"


def _recent_failures(conn: Connection, ip: str | None, since: datetime) -> int:
    if ip is None:
        return 0
    count = conn.execute(
        select(func.count())
        .select_from(security_events)
        .where(
            security_events.c.source_ip == ip,
            security_events.c.at >= since,
            security_events.c.kind.in_([f"enrol_{k}" for k in CODE_FAILURES]),
        )
    ).scalar_one()
    return int(count)


def enrol(ctx: CenterContext, req: EnrolmentRequest, ip: str | None) -> EnrolmentAnswer:
    """Spend the code and register the gateway's key; raise ApiError with a clear reason."""
    settings = ctx.settings
    now = ctx.now()
    try:
        public_key = public_key_from_b64url(req.public_key)
    except (JwsError, ValueError) as exc:
        raise ApiError(400, "bad_public_key", "public_key must be a raw Ed25519 key.") from exc
    if key_id(public_key) != req.kid:
        raise ApiError(
            400, "kid_mismatch", "kid must be the RFC 7638 thumbprint of the public key."
        )
    with ctx.engine.begin() as conn:
        since = now - timedelta(seconds=settings.enrol_failure_window_s)
        throttled = _recent_failures(conn, ip, since) >= settings.enrol_max_failures
        if throttled:
            record_security_event(conn, SecurityEvent(now, "enrol_throttled", None, ip, None))
    if throttled:
        raise ApiError(
            429,
            "too_many_attempts",
            "Too many wrong enrolment codes from this address; wait a while and try again.",
            headers={"Retry-After": str(settings.enrol_failure_window_s)},
        )
    code_hash = hash_code(req.code)
    gateway_id = new_gateway_id()
    failure: str | None = None
    try:
        with ctx.engine.begin() as conn:
            claimed = conn.execute(
                update(enrolment_codes)
                .where(
                    enrolment_codes.c.code_hash == code_hash,
                    enrolment_codes.c.used_at.is_(None),
                    enrolment_codes.c.expires_at > now,
                )
                .values(used_at=now)
                .returning(
                    enrolment_codes.c.municipality_id,
                    enrolment_codes.c.home_id,
                    enrolment_codes.c.created_by,
                )
            ).first()
            if claimed is None:
                failure = _code_failure(conn, code_hash)
                record_security_event(
                    conn, SecurityEvent(now, f"enrol_{failure}", None, ip, f"kid {req.kid}")
                )
            else:
                answer = _register(ctx, conn, req, gateway_id, code_hash, claimed, now)
    except IntegrityError as exc:
        raise _key_taken() from exc
    if failure is not None:
        raise ApiError(403, failure, MESSAGES[failure])
    log.info("enrolled gateway %s", gateway_id)
    return answer


def _key_taken() -> ApiError:
    return ApiError(
        409, "key_already_enrolled", "This signing key is already enrolled at the centre."
    )


def _register(
    ctx: CenterContext,
    conn: Connection,
    req: EnrolmentRequest,
    gateway_id: str,
    code_hash: str,
    claimed: Any,
    now: datetime,
) -> EnrolmentAnswer:
    taken = conn.execute(select(gateways.c.id).where(gateways.c.kid == req.kid)).first()
    if taken is not None:
        raise _key_taken()
    conn.execute(
        insert(gateways).values(
            id=gateway_id,
            municipality_id=claimed.municipality_id,
            home_id=claimed.home_id,
            public_key=req.public_key,
            kid=req.kid,
            hostname=req.hostname,
            status="active",
            enrolled_at=now,
            highest_seq=0,
            offline=False,
        )
    )
    conn.execute(
        update(enrolment_codes)
        .where(enrolment_codes.c.code_hash == code_hash)
        .values(used_by_gateway=gateway_id)
    )
    names = conn.execute(
        select(municipalities.c.code, homes.c.ref)
        .select_from(municipalities.join(homes, homes.c.municipality_id == municipalities.c.id))
        .where(homes.c.id == claimed.home_id)
    ).one()
    record_audit(
        conn,
        [
            AuditEntry(
                now,
                f"gateway:{gateway_id}",
                "gateway.enrol",
                municipality_id=claimed.municipality_id,
                home_id=claimed.home_id,
                detail=f"code issued by {claimed.created_by}",
            )
        ],
    )
    return EnrolmentAnswer(
        gateway_id=gateway_id,
        municipality=names.code,
        home=names.ref,
        center_public_key=ctx.receipt_public_key,
        center_kid=ctx.receipt_kid,
        heartbeat_interval_s=ctx.settings.heartbeat_interval_s,
    )


router = APIRouter()


@router.post("/v1/enrol", status_code=201)
def post_enrol(
    request: Request, body: Annotated[dict[str, Any], Depends(json_object)]
) -> JSONResponse:
    ctx = get_ctx(request)
    req = validate(EnrolmentRequest, body)
    answer = enrol(ctx, req, client_ip(request))
    return JSONResponse(answer.model_dump(mode="json"), status_code=201)
