"""Administrative operations as plain functions on a connection: for the CLI, demo and tests.

Each function works inside the caller's transaction (``with engine.begin() as conn``), so a
set-up script either happens completely or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from argon2 import PasswordHasher
from sqlalchemy import Connection, insert, select, update

from response_center.audit import AuditEntry, record_audit
from response_center.auth import DEFAULT_HASHER, Role, hash_password
from response_center.db.schema import (
    ROLES,
    gateways,
    homes,
    municipalities,
    residents,
    user_municipalities,
    users,
)
from response_center.enrolment import (
    IssuedCode,
    create_enrolment_code,
    issue_enrolment_code,
)
from trygg.wire.clock import Clock, system_clock

__all__ = [
    "AdminError",
    "IssuedCode",
    "create_enrolment_code",
    "create_home",
    "create_municipality",
    "create_resident",
    "create_user",
    "issue_enrolment_code",
    "revoke_gateway",
]


class AdminError(ValueError):
    """An administrative request that refers to something that does not exist."""


def municipality_id(conn: Connection, code: str) -> int:
    found = conn.execute(select(municipalities.c.id).where(municipalities.c.code == code)).first()
    if found is None:
        raise AdminError(f"no municipality {code!r}")
    return int(found[0])


def home_id(conn: Connection, municipality: str, ref: str) -> int:
    found = conn.execute(
        select(homes.c.id).where(
            homes.c.municipality_id == municipality_id(conn, municipality), homes.c.ref == ref
        )
    ).first()
    if found is None:
        raise AdminError(f"no home {ref!r} in municipality {municipality!r}")
    return int(found[0])


def create_municipality(conn: Connection, code: str, name: str, clock: Clock = system_clock) -> int:
    """Add a tenant (municipality ``code``, e.g. ``0301``); return its id."""
    stmt = insert(municipalities).values(code=code, name=name, created_at=clock())
    return int(conn.execute(stmt.returning(municipalities.c.id)).scalar_one())


def create_home(
    conn: Connection, municipality: str, ref: str, address: str, clock: Clock = system_clock
) -> int:
    stmt = insert(homes).values(
        municipality_id=municipality_id(conn, municipality),
        ref=ref,
        address=address,
        created_at=clock(),
    )
    return int(conn.execute(stmt.returning(homes.c.id)).scalar_one())


def create_resident(
    conn: Connection,
    municipality: str,
    home: str,
    display_name: str,
    ref: str | None = None,
    clock: Clock = system_clock,
) -> int:
    """Add a resident to a home; ``ref`` is the ``resident_ref`` the gateway's events carry."""
    stmt = insert(residents).values(
        home_id=home_id(conn, municipality, home),
        ref=ref,
        display_name=display_name,
        created_at=clock(),
    )
    return int(conn.execute(stmt.returning(residents.c.id)).scalar_one())


def create_user(
    conn: Connection,
    username: str,
    password: str,
    role: Role,
    municipalities: Sequence[str],
    *,
    hasher: PasswordHasher = DEFAULT_HASHER,
    clock: Clock = system_clock,
    created_by: str = "admin-cli",
) -> int:
    """Add a user with an argon2 password hash, scoped to the given municipality codes."""
    if role not in ROLES:
        raise AdminError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise AdminError("a password must have at least 8 characters")
    scope = [municipality_id(conn, code) for code in municipalities]
    now = clock()
    stmt = insert(users).values(
        username=username,
        password_hash=hash_password(password, hasher),
        role=role,
        active=True,
        created_at=now,
    )
    user_id = int(conn.execute(stmt.returning(users.c.id)).scalar_one())
    if scope:
        conn.execute(
            insert(user_municipalities),
            [{"user_id": user_id, "municipality_id": m} for m in sorted(set(scope))],
        )
    record_audit(
        conn,
        [AuditEntry(now, created_by, "user.create", detail=f"{username} role={role}")],
    )
    return user_id


def revoke_gateway(
    conn: Connection, gateway_id: str, actor: str, clock: Clock = system_clock
) -> None:
    """Refuse everything the gateway's key signs from now on."""
    now: datetime = clock()
    changed = conn.execute(
        update(gateways)
        .where(gateways.c.id == gateway_id, gateways.c.status == "active")
        .values(status="revoked", revoked_at=now)
    ).rowcount
    if changed != 1:
        raise AdminError(f"no active gateway {gateway_id!r}")
    record_audit(conn, [AuditEntry(now, actor, "gateway.revoke", detail=gateway_id)])
