"""The throw-away PostgreSQL cluster now lives in ``trygg.devtools.postgres`` (the benchmarks
use it too); this module keeps the tests' import path."""

from trygg.devtools.postgres import (
    MISSING,
    SUPERUSER,
    PostgresUnavailable,
    TempPostgres,
    find_bin_dir,
    start_temp_postgres,
)

__all__ = [
    "MISSING",
    "SUPERUSER",
    "PostgresUnavailable",
    "TempPostgres",
    "find_bin_dir",
    "start_temp_postgres",
]
