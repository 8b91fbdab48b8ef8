"""``trygg``: one command for the gateway, the response centre and the demo.

Each part registers its own subcommands, so this file only wires them together.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from trygg import __version__


def build_parser() -> argparse.ArgumentParser:
    from gateway import cli as gateway_cli
    from response_center import cli as center_cli
    from trygg import demo

    parser = argparse.ArgumentParser(
        prog="trygg", description="Trygg welfare-technology gateway and response centre"
    )
    parser.add_argument("--version", action="version", version=f"trygg {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TRYGG_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    parts = parser.add_subparsers(dest="part", required=True, metavar="{gateway,center,demo}")
    gateway_cli.register(parts)
    center_cli.register(parts)
    demo.register(parts)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request drowns what matters; our own modules log the outcome.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
