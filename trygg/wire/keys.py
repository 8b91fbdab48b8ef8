"""Ed25519 key files: created once, mode 0600, PEM (PKCS#8)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)


class KeyFileError(RuntimeError):
    """A key file that is missing, unreadable, not Ed25519 or readable by others."""


def create_private_key(path: Path) -> Ed25519PrivateKey:
    """Create a new key at ``path``; refuse to overwrite one that exists."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load the key, refusing a file that group or others can read."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise KeyFileError(f"key file {path} has mode {mode:o}; it must be 600")
    key = load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} is not an Ed25519 key")
    return key


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private_key(path)
    return create_private_key(path)
