"""The few statements SQLite and PostgreSQL spell differently: ON CONFLICT inserts.

Both support ``INSERT ... ON CONFLICT`` with RETURNING, which lets the UNIQUE constraints,
not a racy check-then-insert, decide what is new.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

Insert = postgresql.Insert | sqlite.Insert


def _insert(conn: Connection, table: Table) -> Insert:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {name!r}")


def insert_ignoring_conflicts(conn: Connection, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``: rows that clash with any UNIQUE are skipped."""
    stmt = _insert(conn, table)
    if isinstance(stmt, postgresql.Insert):
        return stmt.on_conflict_do_nothing()
    return stmt.on_conflict_do_nothing()


def upsert(
    conn: Connection,
    table: Table,
    index_elements: Sequence[str],
    update_from: Callable[[Any], Mapping[str, Any]],
) -> Insert:
    """``INSERT ... ON CONFLICT (index_elements) DO UPDATE SET ...``.

    ``update_from`` receives the ``excluded`` pseudo-table and returns the SET clause.
    """
    stmt = _insert(conn, table)
    if isinstance(stmt, postgresql.Insert):
        return stmt.on_conflict_do_update(
            index_elements=list(index_elements), set_=dict(update_from(stmt.excluded))
        )
    return stmt.on_conflict_do_update(
        index_elements=list(index_elements), set_=dict(update_from(stmt.excluded))
    )
