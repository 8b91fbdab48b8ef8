"""An installer enrols gateways against the real centre with ``trygg`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from response_center.db.engine import make_engine
from response_center.enrolment import issue_enrolment_code
from trygg.localsite import HOME, MUNICIPALITY, LocalSite


def trygg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trygg", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[LocalSite]:
    site = LocalSite(tmp_path / "site")
    site.start_center()
    try:
        yield site
    finally:
        site.stop()


def enroll(site: LocalSite, state_dir: Path, code: str) -> subprocess.CompletedProcess[str]:
    return trygg(
        "gateway", "enroll", "--state-dir", str(state_dir),
        "--center", site.center_url, "--code", code, "--ca-file", str(site.ca_file),
    )  # fmt: skip


def test_code_from_the_cli_enrols_once_and_is_then_refused(
    centre: LocalSite, tmp_path: Path
) -> None:
    issued = trygg(
        "center", "enroll-code", "--municipality", MUNICIPALITY[0], "--home", HOME[0],
        "--database-url", centre.database_url, "--state-dir", str(centre.center_dir),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    code = next(word for word in issued.stdout.split() if word.count("-") == 3)

    first, second = tmp_path / "gw1", tmp_path / "gw2"
    for state_dir in (first, second):
        made = trygg("gateway", "init", "--state-dir", str(state_dir))
        assert made.returncode == 0, made.stderr
        assert (state_dir / "signing_key.pem").stat().st_mode & 0o777 == 0o600

    enrolled = enroll(centre, first, code)
    assert enrolled.returncode == 0, enrolled.stderr
    answer = json.loads((first / "enrolment.json").read_text())
    assert answer["gateway_id"].startswith("gw-")
    assert answer["municipality"] == MUNICIPALITY[0] and answer["home"] == HOME[0]
    assert answer["heartbeat_interval_s"] > 0 and answer["center_public_key"]

    reused = enroll(centre, second, code)
    assert reused.returncode == 2
    assert "already been used" in reused.stderr and "code_used" in reused.stderr
    assert not (second / "enrolment.json").exists()


def test_unknown_and_expired_codes_are_refused_with_a_clear_message(
    centre: LocalSite, tmp_path: Path
) -> None:
    state_dir = tmp_path / "gw"
    assert trygg("gateway", "init", "--state-dir", str(state_dir)).returncode == 0

    unknown = enroll(centre, state_dir, "ABCD-EFGH-JKLM-NPQR")
    assert unknown.returncode == 2
    assert (
        "does not know this enrolment code" in unknown.stderr and "code_unknown" in unknown.stderr
    )

    yesterday = datetime.now(UTC) - timedelta(days=1)
    engine = make_engine(centre.database_url)
    with engine.begin() as conn:
        expired = issue_enrolment_code(
            conn, MUNICIPALITY[0], HOME[0], timedelta(hours=1), "installer", lambda: yesterday
        ).code
    engine.dispose()
    refused = enroll(centre, state_dir, expired)
    assert refused.returncode == 2
    assert "expired" in refused.stderr and "code_expired" in refused.stderr
    assert "Traceback" not in refused.stderr + unknown.stderr
    assert not (state_dir / "enrolment.json").exists()
