"""Enrolled gateways as the gateway-facing endpoints see them: found by their key id.

A JWS ``kid`` is the RFC 7638 thumbprint of the gateway's signing key, so the key id alone
names the gateway; an unknown or revoked key is refused and recorded as a security event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, select

from response_center.audit import SecurityEvent, record_security_event
from response_center.db.schema import gateways
from response_center.errors import ApiError
from trygg.wire.jws import public_key_from_b64url


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    kid: str
    public_key: Ed25519PublicKey
    status: str
    municipality_id: int
    home_id: int
    highest_seq: int
    last_boot_id: str | None


def load_gateway(
    conn: Connection, *, kid: str | None = None, gateway_id: str | None = None, lock: bool = False
) -> Gateway | None:
    """Read one gateway by kid or id; ``lock`` takes a row lock on PostgreSQL."""
    stmt = select(gateways)
    if kid is not None:
        stmt = stmt.where(gateways.c.kid == kid)
    elif gateway_id is not None:
        stmt = stmt.where(gateways.c.id == gateway_id)
    else:
        raise ValueError("pass kid or gateway_id")
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    return Gateway(
        id=row["id"],
        kid=row["kid"],
        public_key=public_key_from_b64url(row["public_key"]),
        status=row["status"],
        municipality_id=row["municipality_id"],
        home_id=row["home_id"],
        highest_seq=int(row["highest_seq"]),
        last_boot_id=row["last_boot_id"],
    )


def authenticate_gateway(
    engine: Engine, kid: str, now: datetime, source_ip: str | None, what: str
) -> Gateway:
    """The active gateway holding ``kid``; else 401/403, recorded as a security event."""
    with engine.begin() as conn:
        gateway = load_gateway(conn, kid=kid)
        if gateway is not None and gateway.status == "active":
            return gateway
        if gateway is None:
            record_security_event(
                conn,
                SecurityEvent(now, "unknown_gateway", None, source_ip, f"{what}: kid {kid[:64]}"),
            )
        else:
            record_security_event(
                conn, SecurityEvent(now, "revoked_gateway", gateway.id, source_ip, what)
            )
    if gateway is None:
        raise ApiError(
            401,
            "unknown_gateway",
            "The signing key is not enrolled at this centre; enrol the gateway first.",
        )
    raise ApiError(403, "gateway_revoked", "This gateway has been revoked by the centre.")
