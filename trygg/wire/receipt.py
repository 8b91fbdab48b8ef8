"""Receipts: the centre's signed word that it holds an event.

The gateway deletes an outbox row only on a receipt it has verified with the centre's key
received at enrolment, so a proxy, a stale cache or a forged answer can never make it drop
an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from trygg.wire.canonical import canonical_json
from trygg.wire.jws import sign_detached, verify_detached

ReceiptStatus = Literal["accepted", "duplicate", "rejected"]


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    gateway_id: str
    event_id: str
    seq: int | None = None
    status: ReceiptStatus
    reason: str | None = Field(default=None, max_length=200)
    stored_at: str | None = None
    """When the centre first stored the event; the same on a duplicate as on the original."""

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def settles(self) -> bool:
        """True when the gateway may delete its copy of the event."""
        return self.status in ("accepted", "duplicate")


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    receipt: Receipt
    sig: str

    def to_wire(self) -> dict[str, Any]:
        return {"receipt": self.receipt.to_wire(), "sig": self.sig}


def sign_receipt(receipt: Receipt, key: Ed25519PrivateKey, kid: str) -> SignedReceipt:
    return SignedReceipt(receipt, sign_detached(canonical_json(receipt.to_wire()), key, kid))


def verify_receipt(raw: dict[str, Any], key: Ed25519PublicKey) -> Receipt:
    """Verify one ``{"receipt": {...}, "sig": "..."}`` object; raise ValueError if it fails."""
    body = raw.get("receipt")
    sig = raw.get("sig")
    if not isinstance(body, dict) or not isinstance(sig, str):
        raise ValueError("receipt must be an object with receipt and sig")
    verify_detached(sig, canonical_json(body), key)
    return Receipt.model_validate(body)
