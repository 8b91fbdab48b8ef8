"""A throw-away PostgreSQL cluster for tests and benchmarks: own data dir, own port, own socket.

The machine's PostgreSQL (port 5432) is never used or touched. ``initdb`` refuses to run as
root, so under root the cluster runs as the ``postgres`` system user in a temp dir chowned to
it. Missing binaries fail loudly: a test suite that silently skips its database is no test.

Tests run it with ``fsync`` off (fast, and a test never survives a power cut); a benchmark
passes ``durable=True`` so its figures include the commits' flushes, as in production.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from trygg.net import free_port

MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin "
    "or on PATH. Install the Debian package 'postgresql' (sudo apt-get install postgresql)."
)
SUPERUSER = "trygg_test"


class PostgresUnavailable(RuntimeError):
    pass


def find_bin_dir() -> Path:
    """The newest installed server's bin dir, else wherever initdb is on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise PostgresUnavailable(MISSING)


@dataclass
class TempPostgres:
    """One cluster; ``create_database()`` hands each test a fresh, empty database."""

    bin_dir: Path
    root: Path
    durable: bool = False
    """fsync and synchronous commit on, as a production server runs."""
    port: int = field(init=False, default=0)
    password: str = field(init=False, default_factory=lambda: secrets.token_urlsafe(18))
    _run_as: list[str] = field(init=False, default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def _cmd(self, *args: str) -> list[str]:
        return [*self._run_as, *args]

    def start(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        self._check(
            self._cmd(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ),
            "initdb",
        )
        pwfile.unlink()
        self.port = free_port()
        durability = (
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
            if self.durable
            else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} {durability} "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        self._check(
            self._cmd(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ),
            "pg_ctl start",
        )

    def _check(self, cmd: list[str], what: str) -> None:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{what} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str | None = None) -> str:
        """CREATE DATABASE with a random name; return its SQLAlchemy URL."""
        name = "t_" + secrets.token_hex(8)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(statement)
        return self.url(name)

    def stop(self) -> None:
        if self.port and self.data_dir.exists():
            subprocess.run(
                self._cmd(
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ),
                capture_output=True,
                check=False,
                timeout=120,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def start_temp_postgres(*, durable: bool = False) -> TempPostgres:
    cluster = TempPostgres(
        find_bin_dir(), Path(tempfile.mkdtemp(prefix="trygg-pg-")), durable=durable
    )
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
