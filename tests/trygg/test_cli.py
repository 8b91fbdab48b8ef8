"""The ``trygg`` dispatcher: every part is reachable, and a part loads only what it needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trygg.cli import build_parser, chosen_part


@pytest.mark.parametrize(
    ("argv", "part"),
    [
        (["gateway", "run", "--state-dir", "/tmp/x"], "gateway"),
        (["--log-level", "DEBUG", "center", "serve"], "center"),
        (["center", "create-home", "--state-dir", "gateway"], "center"),
        (["demo"], "demo"),
        (["--help"], None),
        (["bogus"], None),
    ],
)
def test_the_part_is_the_first_word_that_names_one(argv: list[str], part: str | None) -> None:
    assert chosen_part(argv) == part


def test_the_full_parser_still_offers_every_part() -> None:
    parser = build_parser()
    for words in (["gateway", "status"], ["center", "migrate"], ["demo"]):
        assert parser.parse_args(words).part == words[0]


def test_the_gateway_daemon_does_not_load_the_centre_stack() -> None:
    # A fresh interpreter: this test process has imported the centre already.
    probe = (
        "import sys; from trygg.cli import build_parser, chosen_part; "
        "args = build_parser(chosen_part(['gateway', 'status'])).parse_args(['gateway', 'status']);"
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'alembic', 'uvicorn', 'response_center')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
