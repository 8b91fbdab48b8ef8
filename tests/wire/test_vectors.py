"""The standards.md §5.2 test vectors, reproduced with the RFC 8032 TEST 1 key."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.jwk import OKPKey

from trygg.wire.canonical import canonical_json
from trygg.wire.jws import JwsError, b64url_encode, public_key_bytes, sign_detached, verify_detached

SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

EVENT = {
    "v": 1,
    "event_id": "0b5d2c1e-7f3a-4c59-9d1e-2a4b6c8d0e1f",
    "gateway_id": "gw-0001",
    "boot_id": "c2a3",
    "seq": 4711,
    "ts": "2025-03-14T08:30:00.123Z",
    "type": "alarm.fall",
    "vkp_alert_code": "4.1",
    "severity": "critical",
    "source": {"kind": "zigbee", "device": "bedroom/fall_sensor", "ieee": "0x00158d0001a2b3c4"},
    "data": {"fall": True, "battery": 87, "linkquality": 120},
}
JCS = (
    '{"boot_id":"c2a3","data":{"battery":87,"fall":true,"linkquality":120},'
    '"event_id":"0b5d2c1e-7f3a-4c59-9d1e-2a4b6c8d0e1f","gateway_id":"gw-0001","seq":4711,'
    '"severity":"critical","source":{"device":"bedroom/fall_sensor","ieee":"0x00158d0001a2b3c4",'
    '"kind":"zigbee"},"ts":"2025-03-14T08:30:00.123Z","type":"alarm.fall","v":1,'
    '"vkp_alert_code":"4.1"}'
)
RAW_SIGNATURE = (
    "d567c443dcc80e0457078420326cb590931ca446af3f934c1a7404332d6fb8e2"
    "5018dc3645bf2eed8a3ca7a282e77390cbfee8827287f9ecf8067d5065d3bb04"
)
DETACHED_JWS = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6Imd3LTAwMDEjazEiLCJiNjQiOmZhbHNlLCJjcml0IjpbImI2NCJdfQ"
    "..jAiKp59z_VmytdDk8x-xzfGZKalV4hKChXe1gBveI4LZsk5lNOFZE8E6saIgRsOtZmBxjfJYsx0bM8lY06cFCg"
)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SECRET)


def test_rfc8032_test1_key_and_empty_message(key: Ed25519PrivateKey) -> None:
    assert public_key_bytes(key.public_key()).hex() == PUBLIC
    signature = key.sign(b"").hex()
    assert signature.startswith("e5564300") and signature.endswith("7a100b")


def test_canonical_bytes_and_digest() -> None:
    body = canonical_json(EVENT)
    assert body.decode() == JCS
    assert hashlib.sha256(body).hexdigest() == (
        "bd80beaa4ad6a16807051bc9bdbcd6d7541c44cff78aa13471c9767772831f1d"
    )


def test_raw_signature(key: Ed25519PrivateKey) -> None:
    assert key.sign(JCS.encode()).hex() == RAW_SIGNATURE
    assert b64url_encode(bytes.fromhex(RAW_SIGNATURE)) == (
        "1WfEQ9zIDgRXB4QgMmy1kJMcpEavP5NMGnQEMy1vuOJQGNw2Rb8u7Yo8p6KC53OQy_7ognKH-ez4Bn1QZdO7BA"
    )


def test_detached_unencoded_jws_matches_vector(key: Ed25519PrivateKey) -> None:
    assert sign_detached(JCS.encode(), key, "gw-0001#k1") == DETACHED_JWS
    header = verify_detached(DETACHED_JWS, JCS.encode(), key.public_key())
    assert header == {"alg": "EdDSA", "kid": "gw-0001#k1", "b64": False, "crit": ["b64"]}


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_a_standard_jose_library_verifies_our_signature(key: Ed25519PrivateKey) -> None:
    """joserfc, an independent implementation, accepts the detached b64=false JWS."""
    jwk = OKPKey.import_key(
        {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(bytes.fromhex(PUBLIC))}
    )
    ours = sign_detached(canonical_json(EVENT), key, "gw-0001#k1")
    verified = jws.deserialize_compact(ours, jwk, payload=JCS, algorithms=["EdDSA"])
    assert verified.payload == JCS.encode()
    assert verified.headers()["kid"] == "gw-0001#k1"


def test_changed_byte_does_not_verify(key: Ed25519PrivateKey) -> None:
    tampered = JCS.replace('"seq":4711', '"seq":4712').encode()
    with pytest.raises(JwsError, match="does not verify"):
        verify_detached(DETACHED_JWS, tampered, key.public_key())
