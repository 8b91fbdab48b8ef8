"""Fixtures shared by every test package: real parts, started on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto
from trygg.pki import ServerCertificate, create_local_tls


@pytest.fixture(scope="session")
def local_tls(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    """A CA and a server certificate for localhost/127.0.0.1, made once per test run."""
    return create_local_tls(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port with persistence in ``tmp_path``."""
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker
