"""The gateway's identity: its signing key, made once, and its enrolment into a home.

``init_gateway`` makes the Ed25519 signing key (mode 0600) and never replaces one: a new key
would be a new gateway to the centre, and every event still queued would stop verifying.
``enroll`` trades a one-time code from the centre for the gateway's id, its municipality and
home, and the centre's receipt key, over TLS that is always verified.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import (
    CONFIG_FILE,
    ENROLMENT_FILE,
    SIGNING_KEY_FILE,
    GatewayConfig,
    save_config,
)
from trygg.wire.canonical import CanonicalJsonError, parse_json_object
from trygg.wire.clock import Clock, format_ts, system_clock
from trygg.wire.jws import JwsError, b64url_encode, key_id, public_key_bytes, public_key_from_b64url
from trygg.wire.keys import KeyFileError, create_private_key, load_private_key
from trygg.wire.messages import EnrolmentAnswer, EnrolmentRequest

log = logging.getLogger("trygg.gateway.identity")

ENROL_TIMEOUT_S = 30.0

REFUSAL_SENTENCES = {
    "code_unknown": "The centre does not know this enrolment code. Check it for typing errors.",
    "code_used": "This enrolment code has already been used. Ask the centre for a new one.",
    "code_expired": "This enrolment code has expired. Ask the centre for a new one.",
}


class IdentityError(RuntimeError):
    """An expected failure with a sentence an installer can act on."""


class EnrolmentError(IdentityError):
    pass


class EnrolmentRefused(EnrolmentError):
    """The centre said no; ``reason`` is its machine-readable reason."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"enrolment refused ({reason}): {message}")

    @property
    def sentence(self) -> str:
        return REFUSAL_SENTENCES.get(self.reason, self.message)


@dataclass(frozen=True)
class InitResult:
    state_dir: Path
    key_file: Path
    kid: str
    public_key: str
    """Raw Ed25519 public key, base64url: what the centre stores at enrolment."""
    config_file: Path
    config_created: bool


class Enrolment(BaseModel):
    """What the centre decided at enrolment; saved as ``enrolment.json`` (0600)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    center_url: str
    gateway_id: str = Field(min_length=1, max_length=128)
    municipality: str
    home: str
    center_public_key: str
    center_kid: str
    heartbeat_interval_s: int = Field(ge=1)
    ca_file: Path | None = None
    enrolled_at: str

    def center_key(self) -> Ed25519PublicKey:
        return public_key_from_b64url(self.center_public_key)


# --- init ----------------------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o700)
        log.warning("state directory %s was mode %o; now 700", path, mode)


def init_gateway(state_dir: Path) -> InitResult:
    """Create the state directory (0700), the signing key (0600) and a default config."""
    key_file = state_dir / SIGNING_KEY_FILE
    if key_file.exists():
        raise IdentityError(
            f"a signing key already exists at {key_file}; refusing to replace it "
            "(a new key would make this a different gateway)"
        )
    try:
        _private_dir(state_dir)
        key = create_private_key(key_file)
    except FileExistsError as exc:
        raise IdentityError(f"a signing key already exists at {key_file}") from exc
    except OSError as exc:
        raise IdentityError(f"cannot create {key_file}: {exc.strerror}") from exc
    config_file = state_dir / CONFIG_FILE
    created = not config_file.exists()
    if created:
        save_config(GatewayConfig(state_dir=state_dir))
    public = key.public_key()
    log.info("created signing key %s", key_id(public))
    return InitResult(
        state_dir=state_dir,
        key_file=key_file,
        kid=key_id(public),
        public_key=b64url_encode(public_key_bytes(public)),
        config_file=config_file,
        config_created=created,
    )


def load_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    key_file = state_dir / SIGNING_KEY_FILE
    if not key_file.exists():
        raise IdentityError(f"no signing key at {key_file}; run 'trygg gateway init' first")
    try:
        return load_private_key(key_file)
    except (KeyFileError, ValueError) as exc:
        raise IdentityError(str(exc)) from exc


# --- enrolment file ------------------------------------------------------------------------


def save_enrolment(state_dir: Path, enrolment: Enrolment) -> Path:
    """Write ``enrolment.json`` atomically with mode 0600."""
    path = state_dir / ENROLMENT_FILE
    tmp = path.with_name(f".{ENROLMENT_FILE}.{os.getpid()}.tmp")
    data = enrolment.model_dump_json(indent=2).encode("utf-8") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def load_enrolment(state_dir: Path) -> Enrolment | None:
    """The saved enrolment, or None before enrolment."""
    path = state_dir / ENROLMENT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return Enrolment.model_validate(parse_json_object(raw))
    except (CanonicalJsonError, ValidationError) as exc:
        raise IdentityError(f"{path} is damaged: {exc}") from exc


# --- talking to the centre -----------------------------------------------------------------


def check_center_url(url: str) -> str:
    """Accept https, or http only to a loopback host; return the URL without a trailing /."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise EnrolmentError(f"not a URL: {url!r}") from exc
    if parsed.scheme == "https" and parsed.host:
        return url.rstrip("/")
    if parsed.scheme == "http" and _is_loopback(parsed.host):
        return url.rstrip("/")
    if parsed.scheme == "http":
        raise EnrolmentError(
            f"refusing plain http to {parsed.host}: use https (http is allowed only to loopback)"
        )
    raise EnrolmentError(f"the centre URL must start with https:// (got {url!r})")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verified TLS: the system's trust store, or only the given CA for a private centre."""
    try:
        if ca_file is not None:
            return ssl.create_default_context(cafile=str(ca_file))
        return ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise IdentityError(f"cannot load CA file {ca_file}: {exc}") from exc


def describe_http_error(url: str, exc: httpx.HTTPError) -> str:
    """One sentence for a failed request, naming certificate problems as such."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of {url} could not be verified ({cause.verify_message}); "
                "for a private CA pass --ca-file"
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time"
    return f"cannot reach {url}: {exc or type(exc).__name__}"


def _refusal(response: httpx.Response) -> EnrolmentRefused:
    try:
        detail: Any = parse_json_object(response.content).get("detail")
    except CanonicalJsonError:
        detail = None
    if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
        message = detail.get("message")
        return EnrolmentRefused(
            detail["reason"][:64], str(message)[:300] if message else detail["reason"]
        )
    return EnrolmentRefused("forbidden", "the centre refused the enrolment")


def _prepare(
    state_dir: Path, center_url: str, code: str, ca_file: Path | None, *, force: bool
) -> tuple[str, EnrolmentRequest, Path | None]:
    """Check everything local before asking the centre: URL, earlier enrolment, key, code."""
    url = check_center_url(center_url)
    existing = load_enrolment(state_dir)
    if existing is not None and not force:
        raise EnrolmentError(
            f"already enrolled as {existing.gateway_id} with {existing.center_url}; "
            "pass --force to enrol again"
        )
    public = load_signing_key(state_dir).public_key()
    try:
        request = EnrolmentRequest(
            code=code.strip(),
            public_key=b64url_encode(public_key_bytes(public)),
            kid=key_id(public),
            hostname=socket.gethostname()[:128] or None,
        )
    except ValidationError as exc:
        raise EnrolmentError("the enrolment code must be 4 to 64 characters") from exc
    return url, request, ca_file.resolve() if ca_file is not None else None


async def enroll(
    state_dir: Path,
    center_url: str,
    code: str,
    *,
    ca_file: Path | None = None,
    force: bool = False,
    clock: Clock = system_clock,
) -> Enrolment:
    """Enrol this gateway with the centre using a one-time ``code``; save and return it.

    Raises EnrolmentRefused with the centre's reason (``code_unknown``, ``code_used``,
    ``code_expired``), or EnrolmentError / IdentityError with a sentence for the installer.
    """
    url, request, ca = _prepare(state_dir, center_url, code, ca_file, force=force)
    async with httpx.AsyncClient(verify=tls_context(ca), timeout=ENROL_TIMEOUT_S) as client:
        try:
            response = await client.post(
                f"{url}/v1/enrol",
                content=request.model_dump_json(exclude_none=True),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise EnrolmentError(describe_http_error(url, exc)) from exc
    if response.status_code == 403:
        refusal = _refusal(response)
        log.warning("enrolment refused: %s", refusal.reason)
        raise refusal
    if response.status_code not in (200, 201):
        raise EnrolmentError(f"the centre answered HTTP {response.status_code} to the enrolment")
    try:
        answer = EnrolmentAnswer.model_validate(parse_json_object(response.content))
        public_key_from_b64url(answer.center_public_key)
    except (CanonicalJsonError, ValidationError, JwsError) as exc:
        raise EnrolmentError("the centre's answer is not a valid enrolment answer") from exc
    enrolment = Enrolment(
        center_url=url,
        gateway_id=answer.gateway_id,
        municipality=answer.municipality,
        home=answer.home,
        center_public_key=answer.center_public_key,
        center_kid=answer.center_kid,
        heartbeat_interval_s=max(1, answer.heartbeat_interval_s),
        ca_file=ca,
        enrolled_at=format_ts(clock()),
    )
    save_enrolment(state_dir, enrolment)
    log.info("enrolled as %s (municipality %s)", enrolment.gateway_id, enrolment.municipality)
    return enrolment
