"""``trygg center ...``: serve the centre and administer it from a shell.

``register(subparsers)`` adds the ``center`` command to the umbrella ``trygg`` parser; each
subcommand sets ``handler`` (``args -> exit code``). ``main(argv)`` runs the same
subcommands on their own (``python -m response_center serve ...``).

Passwords are read from stdin or a file, never from argv, where ``ps`` would show them.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from response_center import admin
from response_center.context import load_receipt_key
from response_center.db.engine import make_engine, migrate
from response_center.enrolment import EnrolmentError, issue_enrolment_code
from response_center.settings import CenterSettings, SettingsError
from trygg.wire.clock import format_ts, system_clock
from trygg.wire.jws import key_id

log = logging.getLogger("trygg.center.cli")

Handler = Callable[[argparse.Namespace], int]


class CliError(RuntimeError):
    """A command that cannot run as asked; the message says what to change."""


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def settings_from(args: argparse.Namespace, **extra: Any) -> CenterSettings:
    return CenterSettings.from_env(
        state_dir=args.state_dir, database_url=args.database_url, **extra
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (env TRYGG_CENTER_DATABASE_URL; default: "
        "sqlite:///<state dir>/center.sqlite)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="holds the receipt key and the default database "
        "(env TRYGG_CENTER_STATE_DIR; default /var/lib/trygg-center)",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn options for ``serve``; refuses plain HTTP except explicitly on loopback."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together")
    options: dict[str, Any] = {"host": args.host, "port": args.port}
    if args.tls_cert:
        options.update(ssl_certfile=str(args.tls_cert), ssl_keyfile=str(args.tls_key))
        if args.tls_client_ca:
            options.update(ssl_ca_certs=str(args.tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        return options
    if not args.insecure_http:
        raise CliError("refusing to serve without TLS: pass --tls-cert and --tls-key")
    if not _is_loopback(args.host):
        raise CliError("--insecure-http is only allowed on a loopback address")
    log.warning(
        "serving plain HTTP on %s:%d (loopback only, for development)", args.host, args.port
    )
    return options


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from response_center.app import create_app

    options = serve_options(args)
    settings = settings_from(args)
    if args.workers > 1:
        os.environ["TRYGG_CENTER_STATE_DIR"] = str(settings.state_dir)
        os.environ["TRYGG_CENTER_DATABASE_URL"] = settings.database_url
        migrate(settings.database_url)
        load_receipt_key(settings.receipt_key_file)
        uvicorn.run(
            "response_center.app:app_from_env", factory=True, workers=args.workers, **options
        )
    else:
        uvicorn.run(create_app(settings), **options)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    migrate(settings.database_url)
    key = load_receipt_key(settings.receipt_key_file)
    _out(f"database at head; receipt key id {key_id(key.public_key())}")
    return 0


def _admin(args: argparse.Namespace, action: Callable[[Any], str]) -> int:
    settings = settings_from(args)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            message = action(conn)
    except IntegrityError as exc:
        raise CliError("that already exists") from exc
    except (admin.AdminError, EnrolmentError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        engine.dispose()
    _out(message)
    return 0


def cmd_create_municipality(args: argparse.Namespace) -> int:
    return _admin(
        args,
        lambda conn: (
            f"municipality {args.code} created (id "
            f"{admin.create_municipality(conn, args.code, args.name)})"
        ),
    )


def cmd_create_home(args: argparse.Namespace) -> int:
    return _admin(
        args,
        lambda conn: (
            f"home {args.ref} created (id "
            f"{admin.create_home(conn, args.municipality, args.ref, args.address)})"
        ),
    )


def cmd_create_resident(args: argparse.Namespace) -> int:
    return _admin(
        args,
        lambda conn: (
            "resident created (id "
            f"{admin.create_resident(conn, args.municipality, args.home, args.name, args.ref)})"
        ),
    )


def read_password(args: argparse.Namespace) -> str:
    """From ``--password-file``, else stdin (prompted when stdin is a terminal)."""
    if args.password_file is not None:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read the password file: {exc.strerror}") from exc
    elif sys.stdin.isatty():
        text = getpass.getpass("Password: ")
    else:
        text = sys.stdin.readline()
    password = text.rstrip("\r\n")
    if not password:
        raise CliError("no password given (stdin or --password-file)")
    return password


def cmd_create_user(args: argparse.Namespace) -> int:
    password = read_password(args)
    return _admin(
        args,
        lambda conn: (
            f"user {args.username} created (id "
            + str(
                admin.create_user(conn, args.username, password, args.role, args.municipality or [])
            )
            + ")"
        ),
    )


def cmd_enroll_code(args: argparse.Namespace) -> int:
    if not 0 < args.ttl_hours <= 24 * 14:
        raise CliError("--ttl-hours must be between 0 and 336")

    def issue(conn: Any) -> str:
        issued = issue_enrolment_code(
            conn,
            args.municipality,
            args.home,
            timedelta(hours=args.ttl_hours),
            args.created_by or getpass.getuser(),
            system_clock,
        )
        return f"Enrolment code: {issued.code}\nExpires: {format_ts(issued.expires_at)}"

    return _admin(args, issue)


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (CliError, SettingsError) as exc:
            log.error("%s", exc)
            sys.stderr.write(f"trygg center: {exc}\n")
            return 2

    return run


def add_commands(commands: Any) -> None:
    """Add the centre's subcommands to an ``add_subparsers()`` object."""

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        # No abbreviations: ``--password`` must never be read as ``--password-file``.
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=help_text, allow_abbrev=False
        )
        _common(parser)
        parser.set_defaults(handler=_guarded(handler))
        return parser

    serve = command("serve", cmd_serve, "run the response centre (HTTPS)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--tls-cert", type=Path, default=None)
    serve.add_argument("--tls-key", type=Path, default=None)
    serve.add_argument(
        "--tls-client-ca", type=Path, default=None, help="require client certificates (mTLS)"
    )
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--insecure-http",
        action="store_true",
        help="serve plain HTTP (development only, loopback only)",
    )

    command("migrate", cmd_migrate, "create or upgrade the database schema")

    muni = command("create-municipality", cmd_create_municipality, "add a municipality")
    muni.add_argument("--code", required=True, help="municipality number, e.g. 0301")
    muni.add_argument("--name", required=True)

    home = command("create-home", cmd_create_home, "add a home to a municipality")
    home.add_argument("--municipality", required=True)
    home.add_argument("--ref", required=True)
    home.add_argument("--address", required=True)

    resident = command("create-resident", cmd_create_resident, "add a resident to a home")
    resident.add_argument("--municipality", required=True)
    resident.add_argument("--home", required=True)
    resident.add_argument("--name", required=True)
    resident.add_argument("--ref", default=None, help="the resident_ref the gateway sends")

    user = command("create-user", cmd_create_user, "add a user (password on stdin)")
    user.add_argument("--username", required=True)
    user.add_argument("--role", required=True, choices=["operator", "nurse", "installer", "admin"])
    user.add_argument("--municipality", action="append", help="repeat for several")
    user.add_argument("--password-file", type=Path, default=None)

    code = command("enroll-code", cmd_enroll_code, "issue a one-time gateway enrolment code")
    code.add_argument("--municipality", required=True)
    code.add_argument("--home", required=True)
    code.add_argument("--ttl-hours", type=float, default=24.0)
    code.add_argument("--created-by", default=None, help="default: the login name")


def register(subparsers: Any) -> None:
    """Add ``center`` and its subcommands to the umbrella ``trygg`` parser."""
    center = subparsers.add_parser("center", help="the response centre")
    commands = center.add_subparsers(dest="center_command", required=True, metavar="COMMAND")
    add_commands(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trygg center", description="Trygg response centre", allow_abbrev=False
    )
    parser.add_argument("--log-level", default=os.environ.get("TRYGG_LOG_LEVEL", "INFO"))
    add_commands(parser.add_subparsers(dest="center_command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.handler
    return int(handler(args))
