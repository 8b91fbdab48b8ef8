"""``trygg gateway init | enroll | status`` as an installer runs them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.cli import main
from tests.gateway.conftest import LocalCentre


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_then_a_second_init_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    code, out, _ = run(capsys, "init", "--state-dir", str(state))
    assert code == 0
    assert "Created signing key" in out and "mode 600" in out
    assert stat.S_IMODE((state / "signing_key.pem").stat().st_mode) == 0o600

    code, out, err = run(capsys, "init", "--state-dir", str(state))
    assert code == 2
    assert err.startswith("trygg gateway init: error: a signing key already exists")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_state_directory_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRYGG_GATEWAY_STATE_DIR", str(tmp_path / "from-env"))
    assert run(capsys, "init")[0] == 0
    assert (tmp_path / "from-env" / "signing_key.pem").exists()


def test_enroll_and_status_against_the_centre(
    tmp_path: Path, centre: LocalCentre, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "init", "--state-dir", str(tmp_path))
    centre.codes["K7QM-2XPW-9RTA-B4NE"] = "ok"
    code, out, err = run(
        capsys,
        "enroll",
        "--state-dir",
        str(tmp_path),
        "--center",
        centre.url,
        "--code",
        "K7QM-2XPW-9RTA-B4NE",
        "--ca-file",
        str(centre.ca_file),
    )
    assert (code, err) == (0, "")
    assert out.startswith("Enrolled as gw-0001: home home-7 in municipality 0301")

    code, out, _ = run(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 0
    assert f"gw-0001 at {centre.url}" in out
    assert "no database yet" in out


@pytest.mark.parametrize(
    ("outcome", "sentence"),
    [
        ("code_expired", "This enrolment code has expired. Ask the centre for a new one."),
        ("code_used", "This enrolment code has already been used."),
    ],
)
def test_a_refused_enrolment_prints_the_reason_as_a_sentence(
    tmp_path: Path,
    centre: LocalCentre,
    capsys: pytest.CaptureFixture[str],
    outcome: str,
    sentence: str,
) -> None:
    run(capsys, "init", "--state-dir", str(tmp_path))
    centre.codes["OLD0-CODE"] = outcome
    code, out, err = run(
        capsys,
        "enroll",
        "--state-dir",
        str(tmp_path),
        "--center",
        centre.url,
        "--code",
        "OLD0-CODE",
        "--ca-file",
        str(centre.ca_file),
    )
    assert (code, out) == (2, "")
    assert err.startswith("trygg gateway enroll: error: enrolment refused: " + sentence)
    assert err.rstrip().endswith(f"(reason: {outcome})")
    assert not (tmp_path / "enrolment.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--center", "http://centre.example.no", "--code", "ABCD-1234"], "use https"),
        (["--center", "https://127.0.0.1:1", "--code", "ABCD-1234"], "cannot reach"),
    ],
)
def test_enrolment_mistakes_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    run(capsys, "init", "--state-dir", str(tmp_path))
    code, _, err = run(capsys, "enroll", "--state-dir", str(tmp_path), *argv)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_enroll_before_init_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "enroll",
        "--state-dir",
        str(tmp_path),
        "--center",
        "https://c.example",
        "--code",
        "ABCD-1234",
    )
    assert code == 2
    assert "run 'trygg gateway init' first" in err


def test_missing_arguments_are_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["enroll", "--code", "ABCD-1234"])
    assert exit_.value.code == 2
    assert "--center" in capsys.readouterr().err
