"""The migrated database is exactly the Core schema, and its logs cannot be rewritten."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, delete, func, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError, StatementError

from response_center import admin
from response_center.alarms import NewAlarm, open_alarms
from response_center.db.engine import make_engine, migrate
from response_center.db.schema import APPEND_ONLY_TABLES, audit_log, metadata, security_events

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(center_db_url: str) -> Engine:
    migrate(center_db_url)
    migrate(center_db_url)  # a second run is a no-op, as on every restart
    return make_engine(center_db_url)


def test_migrations_create_exactly_the_core_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == "0002"
    assert set(inspect(engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    engine.dispose()


def _seed(conn: Connection, table: str) -> None:
    if table == "security_events":
        conn.execute(insert(security_events).values(at=NOW, kind="x"))
    elif table == "audit_log":
        conn.execute(insert(audit_log).values(at=NOW, actor="a", action="b", outcome="ok"))
    else:
        admin.create_municipality(conn, "0301", "Oslo", clock=lambda: NOW)
        open_alarms(conn, [NewAlarm(1, None, "alarm.button", 1, NOW)], NOW, "system")


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_history_and_logs_are_append_only(engine: Engine, table: str) -> None:
    target = metadata.tables[table]
    with engine.begin() as conn:
        _seed(conn, table)
    column = "note" if table == "alarm_transitions" else "detail"
    for statement in (update(target).values({column: "rewritten"}), delete(target)):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(statement)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(target)).scalar_one() == 1
    engine.dispose()


def test_sqlite_runs_wal_with_foreign_keys_and_full_sync(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/c.sqlite"
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2
    engine.dispose()


def test_stored_times_come_back_aware_utc(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(audit_log).values(at=NOW, actor="a", action="b", outcome="ok"))
    with engine.connect() as conn:
        at = conn.execute(select(audit_log.c.at)).scalar_one()
    assert at == NOW and at.tzinfo is not None
    engine.dispose()
    with pytest.raises(StatementError, match="naive"), engine.begin() as conn:
        conn.execute(
            insert(audit_log).values(
                at=NOW.replace(tzinfo=None), actor="a", action="b", outcome="ok"
            )
        )
    engine.dispose()
