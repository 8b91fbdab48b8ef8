"""``trygg gateway …``: init, enroll, run, status; the installer's pair, devices, test-alarm.

``trygg/cli.py`` calls :func:`register`; each subcommand sets ``handler(args) -> int``.
Expected failures print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_STATE_DIR, ConfigError, load_config
from gateway.daemon import run_until_signalled
from gateway.identity import EnrolmentRefused, IdentityError, enroll, init_gateway
from gateway.installer_cli import add_installer_commands
from gateway.status import collect_status, format_status

STATE_DIR_ENV = "TRYGG_GATEWAY_STATE_DIR"
EXIT_FAILURE = 2

SubParsers = argparse._SubParsersAction  # what ArgumentParser.add_subparsers returns


def state_dir_of(args: argparse.Namespace) -> Path:
    """``--state-dir``, else ``$TRYGG_GATEWAY_STATE_DIR``, else /var/lib/trygg-gateway."""
    given: Path | None = getattr(args, "state_dir", None)
    if given is not None:
        return given
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else DEFAULT_STATE_DIR


def common_options() -> argparse.ArgumentParser:
    """Options every gateway subcommand takes; pass as ``parents=[common_options()]``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"state directory (default: ${STATE_DIR_ENV} or {DEFAULT_STATE_DIR})",
    )
    return common


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _fail(command: str, message: str) -> int:
    sys.stderr.write(f"trygg gateway {command}: error: {message}\n")
    return EXIT_FAILURE


def _expected_failures(command: str) -> Callable[[Callable[[argparse.Namespace], int]], Any]:
    """Turn the failures an installer can meet into one clear line and exit code 2."""

    def wrap(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except EnrolmentRefused as exc:
                return _fail(command, f"enrolment refused: {exc.sentence} (reason: {exc.reason})")
            except (IdentityError, ConfigError) as exc:
                return _fail(command, str(exc))
            except PermissionError as exc:
                return _fail(command, f"permission denied: {exc.filename}")

        return run

    return wrap


@_expected_failures("init")
def _init(args: argparse.Namespace) -> int:
    result = init_gateway(state_dir_of(args))
    _out(f"Created signing key {result.kid} in {result.key_file} (mode 600).")
    if result.config_created:
        _out(f"Wrote the default configuration {result.config_file}.")
    _out("Next: trygg gateway enroll --center URL --code CODE")
    return 0


@_expected_failures("enroll")
def _enroll(args: argparse.Namespace) -> int:
    enrolment = asyncio.run(
        enroll(
            state_dir_of(args),
            args.center,
            args.code,
            ca_file=args.ca_file,
            force=args.force,
        )
    )
    _out(
        f"Enrolled as {enrolment.gateway_id}: home {enrolment.home} in municipality "
        f"{enrolment.municipality}, centre {enrolment.center_url}, "
        f"heartbeat every {enrolment.heartbeat_interval_s} s."
    )
    return 0


@_expected_failures("run")
def _run(args: argparse.Namespace) -> int:
    run_until_signalled(load_config(state_dir_of(args)))
    return 0


@_expected_failures("status")
def _status(args: argparse.Namespace) -> int:
    status = collect_status(state_dir_of(args))
    if args.json:
        _out(json.dumps(status.to_json(), indent=2, sort_keys=True))
    else:
        _out(format_status(status))
    return 0


def _add_init(
    commands: SubParsers[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "init", parents=[common], help="create the state directory and the signing key"
    )
    parser.set_defaults(handler=_init)


def _add_enroll(
    commands: SubParsers[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "enroll", parents=[common], help="enrol this gateway with a response centre"
    )
    parser.add_argument("--center", required=True, metavar="URL", help="the centre's https URL")
    parser.add_argument("--code", required=True, help="one-time enrolment code from the centre")
    parser.add_argument(
        "--ca-file", type=Path, default=None, help="CA certificate of a private centre (PEM)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing enrolment")
    parser.set_defaults(handler=_enroll)


def _add_run(
    commands: SubParsers[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "run", parents=[common], help="run the gateway daemon until SIGTERM or Ctrl-C"
    )
    parser.set_defaults(handler=_run)


def _add_status(
    commands: SubParsers[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "status", parents=[common], help="identity, enrolment and outbox health"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_status)


COMMANDS: list[Callable[[SubParsers[argparse.ArgumentParser], argparse.ArgumentParser], None]] = [
    _add_init,
    _add_enroll,
    _add_run,
    _add_status,
]


def register(
    subparsers: SubParsers[argparse.ArgumentParser],
) -> SubParsers[argparse.ArgumentParser]:
    """Add ``gateway`` and its subcommands to the ``trygg`` parser; return its subparsers."""
    parser = subparsers.add_parser("gateway", help="the home gateway")
    commands = parser.add_subparsers(dest="gateway_command", required=True)
    common = common_options()
    for add in COMMANDS:
        add(commands, common)
    add_installer_commands(commands, common, state_dir_of)
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trygg gateway <argv>`` (for tests and ``python -m``-style use)."""
    parser = argparse.ArgumentParser(prog="trygg")
    register(parser.add_subparsers(dest="part", required=True))
    args = parser.parse_args(["gateway", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))
