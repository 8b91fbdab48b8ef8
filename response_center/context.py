"""What every request handler needs, built once by the app's lifespan and passed explicitly."""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Request
from sqlalchemy import Engine

from response_center.settings import CenterSettings
from trygg.wire.clock import Clock
from trygg.wire.jws import b64url_encode, key_id, public_key_bytes
from trygg.wire.keys import create_private_key, load_private_key

log = logging.getLogger("trygg.center")


@dataclass(frozen=True)
class CenterContext:
    settings: CenterSettings
    engine: Engine
    clock: Clock
    receipt_key: Ed25519PrivateKey

    @cached_property
    def receipt_kid(self) -> str:
        return key_id(self.receipt_key.public_key())

    @cached_property
    def receipt_public_key(self) -> str:
        """The centre's receipt-verification key, raw Ed25519 in base64url."""
        return b64url_encode(public_key_bytes(self.receipt_key.public_key()))

    def now(self) -> datetime:
        return self.clock()


def load_receipt_key(path: Path) -> Ed25519PrivateKey:
    """Load the receipt key, creating it (0600) on first start; safe when workers race."""
    if path.exists():
        return load_private_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        key = create_private_key(path)
    except FileExistsError:
        return load_private_key(path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return load_private_key(path)
        raise
    log.info("created the centre's receipt-signing key %s", path)
    return key


def get_ctx(request: Request) -> CenterContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, CenterContext)
    return ctx


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
