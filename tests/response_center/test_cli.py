"""``trygg center`` commands: set-up from a shell, codes that enrol, and no plain HTTP."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import httpx
import pytest

from response_center import cli
from response_center.app import create_app
from response_center.settings import CenterSettings
from tests.response_center.helpers import FakeClock, FakeGateway
from trygg.wire.clock import system_clock

CODE = re.compile(r"^Enrolment code: ([0-9A-Z]{4}(?:-[0-9A-Z]{4}){3})$", re.M)


def run(capsys: pytest.CaptureFixture[str], url: str, state: Path, *argv: str) -> str:
    code = cli.main([*argv, "--database-url", url, "--state-dir", str(state)])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


async def test_enroll_code_prints_a_code_that_then_enrols(
    center_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    run(capsys, center_db_url, state, "create-municipality", "--code", "0301", "--name", "Oslo")
    run(
        capsys,
        center_db_url,
        state,
        *("create-home", "--municipality", "0301", "--ref", "H-7", "--address", "Gate 7"),
    )
    out = run(
        capsys,
        center_db_url,
        state,
        *("enroll-code", "--municipality", "0301", "--home", "H-7", "--ttl-hours", "2"),
    )
    match = CODE.search(out)
    assert match, out
    assert re.search(r"^Expires: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", out, re.M)
    settings = CenterSettings(state_dir=state, database_url=center_db_url, supervisor_enabled=False)
    app = create_app(settings, system_clock)
    gateway = FakeGateway(FakeClock())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://testserver"
        ) as client,
    ):
        answer = await client.post(
            "/v1/enrol",
            json={"code": match.group(1), "public_key": gateway.public_key, "kid": gateway.kid},
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["home"] == "H-7"
    assert (state / "receipt_key.pem").stat().st_mode & 0o777 == 0o600


async def test_create_user_reads_the_password_from_stdin(
    center_db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    run(capsys, center_db_url, state, "create-municipality", "--code", "0301", "--name", "Oslo")
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))
    out = run(
        capsys,
        center_db_url,
        state,
        *("create-user", "--username", "olga", "--role", "operator", "--municipality", "0301"),
    )
    assert "user olga created" in out
    settings = CenterSettings(state_dir=state, database_url=center_db_url, supervisor_enabled=False)
    app = create_app(settings, system_clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://testserver"
        ) as client,
    ):
        login = await client.post(
            "/v1/session", json={"username": "olga", "password": "a long passphrase"}
        )
    assert login.status_code == 200
    assert login.json()["user"]["municipalities"] == ["0301"]


def test_admin_errors_are_clear_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    code = cli.main(
        [
            "enroll-code",
            "--municipality",
            "9999",
            "--home",
            "x",
            "--database-url",
            url,
            "--state-dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "no home 'x' in municipality '9999'" in capsys.readouterr().err


def test_passwords_are_never_taken_from_argv() -> None:
    with pytest.raises(SystemExit):
        cli.main(["create-user", "--username", "u", "--role", "admin", "--password", "secret"])


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = cli.build_parser()
    return parser.parse_args(["serve", *argv])


def test_serve_refuses_plain_http_unless_asked_and_on_loopback() -> None:
    with pytest.raises(cli.CliError, match="without TLS"):
        cli.serve_options(_serve_args())
    with pytest.raises(cli.CliError, match="loopback"):
        cli.serve_options(_serve_args("--insecure-http", "--host", "192.0.2.10"))
    options = cli.serve_options(_serve_args("--insecure-http", "--host", "::1", "--port", "8080"))
    assert options == {"host": "::1", "port": 8080}
    tls = cli.serve_options(_serve_args("--tls-cert", "c.pem", "--tls-key", "k.pem"))
    assert (tls["ssl_certfile"], tls["ssl_keyfile"]) == ("c.pem", "k.pem")
    with pytest.raises(cli.CliError, match="go together"):
        cli.serve_options(_serve_args("--tls-cert", "c.pem"))


def test_register_adds_the_center_command_to_the_umbrella_parser() -> None:
    parser = argparse.ArgumentParser(prog="trygg")
    cli.register(parser.add_subparsers(dest="part"))
    args = parser.parse_args(["center", "migrate", "--state-dir", "/tmp/x"])
    assert callable(args.handler) and args.center_command == "migrate"
