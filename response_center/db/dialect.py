"""The few statements SQLite and PostgreSQL spell differently: ON CONFLICT inserts.

Both support ``INSERT ... ON CONFLICT`` with RETURNING, which lets the UNIQUE constraints,
not a racy check-then-insert, decide what is new.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, any_, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnClause

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


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot travel in a bulk insert")


def insert_many_ignoring_conflicts(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], returning: str
) -> set[Any]:
    """Insert ``rows`` skipping UNIQUE clashes; return ``returning`` of the rows inserted.

    On PostgreSQL the rows travel as one JSON parameter expanded by
    ``json_populate_recordset``: a 500-row batch is one short statement and one string,
    instead of a 9,000-placeholder VALUES list the driver would re-parse and escape on every
    call (several times slower, measured).
    """
    if not rows:
        return set()
    if conn.dialect.name != "postgresql":
        stmt = insert_ignoring_conflicts(conn, table).returning(table.c[returning])
        return {row[0] for row in conn.execute(stmt, list(rows))}
    quote = conn.dialect.identifier_preparer.quote
    names = [table.c[name].name for name in rows[0]]  # refuses anything not a column
    columns = ", ".join(quote(n) for n in names)
    # Only identifiers of our own Table go into the text; the rows are one bound parameter.
    sql = (
        f"INSERT INTO {quote(table.name)} ({columns}) "  # noqa: S608
        f"SELECT {columns} FROM json_populate_recordset(NULL::{quote(table.name)}, "
        f"CAST(:rows AS json)) ON CONFLICT DO NOTHING RETURNING {quote(returning)}"
    )
    payload = json.dumps([dict(row) for row in rows], default=_json_value)
    return {row[0] for row in conn.execute(text(sql), {"rows": payload})}


def one_of(
    conn: Connection, column: ColumnClause[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter instead of hundreds."""
    if conn.dialect.name == "postgresql":
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == any_(array)
    return column.in_(list(values))
