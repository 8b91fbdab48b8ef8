"""Signing key creation and enrolment against the (real, TLS) test centre."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.identity import (
    EnrolmentError,
    EnrolmentRefused,
    IdentityError,
    check_center_url,
    enroll,
    init_gateway,
    load_enrolment,
    load_signing_key,
)
from tests.gateway.conftest import LocalCentre
from trygg.wire.jws import key_id


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_private_key_and_a_default_config(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = init_gateway(state)

    assert mode(state) == 0o700
    assert mode(result.key_file) == 0o600
    assert result.kid == key_id(load_signing_key(state).public_key())
    assert result.config_created
    assert load_config(state).state_dir == state


def test_init_refuses_to_replace_an_existing_key(tmp_path: Path) -> None:
    first = init_gateway(tmp_path)
    before = first.key_file.read_bytes()
    with pytest.raises(IdentityError, match="refusing to replace"):
        init_gateway(tmp_path)
    assert first.key_file.read_bytes() == before


def test_init_tightens_a_state_directory_others_can_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    init_gateway(state)
    assert mode(state) == 0o700


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    result = init_gateway(tmp_path)
    result.key_file.chmod(0o644)
    with pytest.raises(IdentityError, match="must be 600"):
        load_signing_key(tmp_path)


async def test_enrolment_saves_what_the_centre_decided(tmp_path: Path, centre: LocalCentre) -> None:
    init_gateway(tmp_path)
    centre.codes["ABCD-EFGH-JKLM-NPQR"] = "ok"
    enrolment = await enroll(
        tmp_path, centre.url + "/", "ABCD-EFGH-JKLM-NPQR", ca_file=centre.ca_file
    )

    assert (enrolment.gateway_id, enrolment.municipality, enrolment.home) == (
        "gw-0001",
        "0301",
        "home-7",
    )
    assert enrolment.center_url == centre.url
    assert enrolment.center_kid == centre.kid
    assert enrolment.ca_file is not None and enrolment.ca_file.is_absolute()
    # The centre registered this gateway's own signing key.
    gateway_kid = key_id(load_signing_key(tmp_path).public_key())
    assert centre.gateways[gateway_kid].gateway_id == "gw-0001"
    saved = tmp_path / "enrolment.json"
    assert mode(saved) == 0o600
    assert load_enrolment(tmp_path) == enrolment
    assert json.loads(saved.read_text())["center_public_key"] == enrolment.center_public_key


@pytest.mark.parametrize("reason", ["code_unknown", "code_used", "code_expired"])
async def test_refusals_carry_the_centres_reason(
    tmp_path: Path, centre: LocalCentre, reason: str
) -> None:
    init_gateway(tmp_path)
    if reason != "code_unknown":
        centre.codes["WXYZ-2345"] = reason
    with pytest.raises(EnrolmentRefused) as refused:
        await enroll(tmp_path, centre.url, "WXYZ-2345", ca_file=centre.ca_file)
    assert refused.value.reason == reason
    assert "code" in refused.value.sentence
    assert load_enrolment(tmp_path) is None


async def test_a_code_works_once(tmp_path: Path, centre: LocalCentre) -> None:
    init_gateway(tmp_path / "a")
    init_gateway(tmp_path / "b")
    centre.codes["ONCE-ONLY"] = "ok"
    await enroll(tmp_path / "a", centre.url, "ONCE-ONLY", ca_file=centre.ca_file)
    with pytest.raises(EnrolmentRefused) as refused:
        await enroll(tmp_path / "b", centre.url, "ONCE-ONLY", ca_file=centre.ca_file)
    assert refused.value.reason == "code_used"


async def test_enrolling_twice_needs_force(tmp_path: Path, centre: LocalCentre) -> None:
    init_gateway(tmp_path)
    centre.codes.update({"CODE-0001": "ok", "CODE-0002": "ok"})
    await enroll(tmp_path, centre.url, "CODE-0001", ca_file=centre.ca_file)
    with pytest.raises(EnrolmentError, match="--force"):
        await enroll(tmp_path, centre.url, "CODE-0002", ca_file=centre.ca_file)
    again = await enroll(tmp_path, centre.url, "CODE-0002", ca_file=centre.ca_file, force=True)
    assert again.gateway_id == "gw-0002"


async def test_an_unverified_certificate_is_never_accepted(
    tmp_path: Path, centre: LocalCentre
) -> None:
    init_gateway(tmp_path)
    centre.codes["CODE-0001"] = "ok"
    # Without the private CA the centre's certificate cannot be verified.
    with pytest.raises(EnrolmentError, match=r"could not be verified.*--ca-file"):
        await enroll(tmp_path, centre.url, "CODE-0001")
    assert centre.codes["CODE-0001"] == "ok"  # the request never reached the centre


async def test_enrolment_needs_a_key_first(tmp_path: Path, centre: LocalCentre) -> None:
    with pytest.raises(IdentityError, match="trygg gateway init"):
        await enroll(tmp_path, centre.url, "CODE-0001", ca_file=centre.ca_file)


async def test_an_unreachable_centre_is_a_clear_error(tmp_path: Path) -> None:
    from tests.support.ports import free_port

    init_gateway(tmp_path)
    with pytest.raises(EnrolmentError, match="cannot reach"):
        await enroll(tmp_path, f"https://127.0.0.1:{free_port()}", "CODE-0001")


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://centre.example.no", True),
        ("http://127.0.0.1:8443", True),
        ("http://localhost:8443/", True),
        ("http://[::1]:8443", True),
        ("http://centre.example.no", False),
        ("http://10.0.0.5:8443", False),
        ("ftp://centre.example.no", False),
        ("centre.example.no", False),
    ],
)
def test_plain_http_only_to_loopback(url: str, accepted: bool) -> None:
    if accepted:
        assert check_center_url(url) == url.rstrip("/")
    else:
        with pytest.raises(EnrolmentError):
            check_center_url(url)


def test_a_damaged_enrolment_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "enrolment.json").write_text('{"center_url": 1}')
    with pytest.raises(IdentityError, match="damaged"):
        load_enrolment(tmp_path)
