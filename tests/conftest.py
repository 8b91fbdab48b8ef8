"""Fixtures shared by every test package: real parts, started on free ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from trygg.pki import ServerCertificate, create_local_tls


@pytest.fixture(scope="session")
def local_tls(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    """A CA and a server certificate for localhost/127.0.0.1, made once per test run."""
    return create_local_tls(Path(tmp_path_factory.mktemp("tls")))
