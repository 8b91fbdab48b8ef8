"""``trygg``: one command for the gateway, the response centre and the demo.

Each part registers its own subcommands, so this file only wires them together. Only the
part named on the command line is imported: the gateway daemon on a Raspberry Pi must not
carry the response centre's web and database stack in memory (about 30 MiB of its RSS).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from trygg import __version__

PARTS = {"gateway": "gateway.cli", "center": "response_center.cli", "demo": "trygg.demo"}
"""Each part's module, which has ``register(subparsers)``."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``trygg`` parser with every part, or with ``only`` that one (its import alone)."""
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
    for name, module in PARTS.items():
        if only is None or name == only:
            importlib.import_module(module).register(parts)
    return parser


def chosen_part(argv: Sequence[str]) -> str | None:
    """The part a command line names (the first word that is one), else None for all."""
    return next((word for word in argv if word in PARTS), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(chosen_part(words))
    args = parser.parse_args(words)
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
