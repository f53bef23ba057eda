"""Checks a Hackarena receipt with an ed25519 implementation other than Go's.

Run by TestAnIndependentEd25519AgreesOnReceipts (sdk/receipt) with Debian's
python3-cryptography:

    python3 verify_receipt.py RECEIPT_JSON PUBLIC_KEY_JSON

It prints "valid <submission_id> <receipt id>" and exits 0 when the
signature over the base64-decoded payload verifies under the key the
platform serves at /.well-known/hackarena-receipt-key, and, when the
receipt discloses private metrics, when sha256(salt || private_metrics) is
the payload's private_commitment; otherwise it prints why and exits 1.
"""
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def main():
    with open(sys.argv[1]) as f:
        envelope = json.load(f)
    with open(sys.argv[2]) as f:
        published = json.load(f)
    if published["algorithm"] != "ed25519":
        print("not an ed25519 key")
        return 1
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(published["public_key"]))
    payload = base64.b64decode(envelope["payload"])
    try:
        key.verify(base64.b64decode(envelope["signature"]), payload)
    except InvalidSignature:
        print("invalid signature")
        return 1
    body = json.loads(payload)
    disclosure = envelope.get("disclosure")
    if disclosure is not None:
        digest = hashlib.sha256((disclosure["salt"] + disclosure["private_metrics"]).encode()).hexdigest()
        if digest != body["private_commitment"]:
            print("disclosure does not match the commitment")
            return 1
        json.loads(disclosure["private_metrics"])
    print("valid", body["submission_id"], body["id"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
