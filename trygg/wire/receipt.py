"""Receipts: the centre's signed word that it holds an event.

The gateway deletes an outbox row only on a receipt it has verified with the centre's key
received at enrolment, so a proxy, a stale cache or a forged answer can never make it drop
an alarm. One signature covers all the receipts of a batch: signing and verifying each of
500 receipts would cost the centre and the gateway more than the events themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from trygg.wire.canonical import canonical_json
from trygg.wire.jws import sign_detached, verify_detached

ReceiptStatus = Literal["accepted", "duplicate", "rejected"]


class ReceiptError(ValueError):
    """An answer whose receipts are malformed or whose signature does not verify."""


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


def sign_receipts(receipts: Sequence[Receipt], key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    """The answer body ``{"receipts": [...], "sig": ...}``, signed over ``{"receipts": [...]}``."""
    listed = [r.to_wire() for r in receipts]
    return {
        "receipts": listed,
        "sig": sign_detached(canonical_json({"receipts": listed}), key, kid),
    }


def verify_receipts(answer: Any, key: Ed25519PublicKey) -> list[Receipt]:
    """Verify an answer body's one signature, then parse its receipts; raise ReceiptError."""
    if not isinstance(answer, dict):
        raise ReceiptError("the answer is not a JSON object")
    listed, sig = answer.get("receipts"), answer.get("sig")
    if not isinstance(listed, list) or not isinstance(sig, str):
        raise ReceiptError("the answer needs a receipts list and a sig")
    try:
        verify_detached(sig, canonical_json({"receipts": listed}), key)
        return [Receipt.model_validate(item) for item in listed]
    except ValueError as exc:
        raise ReceiptError(f"receipts refused: {exc}") from exc
