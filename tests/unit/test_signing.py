"""Signing against the provider's own vectors (tests/vectors, copied from shared/vectors:
computed with the provider's SDK code, independently of ours)."""

import json
from pathlib import Path

import pytest

from sim.shared.protocol import signing

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "signatures.json").read_text())


@pytest.mark.parametrize("v", VECTORS["legacy"])
def test_legacy_vectors(v):
    assert signing.legacy_string_to_sign(v["signed_params"]) == v["string_to_sign"]
    assert signing.legacy_sign(v["signed_params"], v["secret"]) == v["signature"]
    assert signing.legacy_verify(v["signed_params"], v["secret"], v["signature"])
    assert not signing.legacy_verify(v["signed_params"], v["secret"] + "x", v["signature"])


def test_legacy_uses_raw_values():
    # The spec example: '+', '#', ',' and '/' stay as they are.
    params = {
        "actions": "R,W",
        "expireTime": "1764300000000",
        "instanceId": "mqtt-cn-demo",
        "resources": "a/+,b/#",
        "serviceName": "mq",
    }
    assert signing.legacy_string_to_sign(params) == (
        "actions=R,W&expireTime=1764300000000&instanceId=mqtt-cn-demo"
        "&resources=a/+,b/#&serviceName=mq"
    )


@pytest.mark.parametrize("v", VECTORS["rpc_v1"])
def test_rpc_v1_vectors(v):
    assert signing.rpc_sign(v["method"], v["params"], v["secret"]) == v["signature"]
    with_sig = dict(v["params"], Signature=v["signature"])
    # Signature is never part of what is signed.
    assert signing.rpc_verify(v["method"], with_sig, v["secret"], v["signature"])
    other = "GET" if v["method"] == "POST" else "POST"
    assert not signing.rpc_verify(other, v["params"], v["secret"], v["signature"])


def test_rpc_string_to_sign_shape():
    s = signing.rpc_string_to_sign("get", {"b": "x y", "a": "1/2"})
    assert s == "GET&%2F&a%3D1%252F2%26b%3Dx%2520y"


@pytest.mark.parametrize("v", VECTORS["v3"])
def test_v3_vectors(v):
    auth = signing.parse_v3_authorization(v["authorization"])
    assert auth.access_key_id == v["access_key_id"]
    assert auth.render() == v["authorization"]
    canonical = signing.v3_canonical_request(
        v["method"], v["path"], v["query"], v["headers"], auth.signed_headers, v["payload_sha256"]
    )
    assert signing.v3_sign(canonical, v["secret"]) == auth.signature
    assert signing.v3_verify(canonical, v["secret"], auth.signature)
    tampered = dict(v["query"], Resources="a/#")
    canonical2 = signing.v3_canonical_request(
        v["method"], v["path"], tampered, v["headers"], auth.signed_headers, v["payload_sha256"]
    )
    assert not signing.v3_verify(canonical2, v["secret"], auth.signature)
    assert signing.sha256_hex(b"") == v["payload_sha256"]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "HMAC-SHA1 Credential=a,SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SHA256 Credential=a",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature",
    ],
)
def test_v3_authorization_rejects_malformed(header):
    with pytest.raises(ValueError):
        signing.parse_v3_authorization(header)


def test_percent_encode_is_rfc3986():
    assert signing.percent_encode("a b*~/+") == "a%20b%2A~%2F%2B"


# -- the provider's sorting of multi-valued parameters (SPEC §3a) -----------------------------
# Expected signatures computed independently of our code:
#   printf '%s' "$STRING_TO_SIGN" | openssl dgst -sha1 -hmac dev-sk -binary | base64

SORTED_STS = (
    "actions=R,W&expireTime=1764300000000&instanceId=mqtt-dev&resources=b1/#,b2/+&serviceName=mq"
)
SORTED_SIG = "lW1O4SndpzP4NW7WAFXs3n0MXiY="
UNSORTED_SIG = "Mef0hcd/oukwt79ihO4BEqMYh+M="  # the same pairs, resources as 'b2/+,b1/#'


def _params(resources: str, actions: str = "R,W") -> dict[str, str]:
    return {
        "actions": actions,
        "expireTime": "1764300000000",
        "instanceId": "mqtt-dev",
        "resources": resources,
        "serviceName": "mq",
    }


@pytest.mark.parametrize(
    ("resources", "actions"), [("b2/+,b1/#", "R,W"), ("b1/#,b2/+", "W,R"), ("b2/+,b1/#", "W,R")]
)
def test_multi_valued_values_are_signed_sorted(resources, actions):
    # The provider's rule: 'paramb=b2,b1,b3' is signed as 'paramb=b1,b2,b3'.
    assert signing.legacy_string_to_sign(_params(resources, actions)) == SORTED_STS
    assert signing.legacy_sign(_params(resources, actions), "dev-sk") == SORTED_SIG


def test_a_client_signing_unsorted_values_is_refused_one_signing_sorted_accepted():
    wire = _params("b2/+,b1/#")  # what the client sends
    assert signing.legacy_verify(wire, "dev-sk", SORTED_SIG)
    assert not signing.legacy_verify(wire, "dev-sk", UNSORTED_SIG)


def test_single_values_are_untouched():
    assert signing.legacy_signed_value("a/+") == "a/+"
    assert signing.legacy_signed_value("z,a,m") == "a,m,z"
