"""Independent readers check custos's DSSE envelopes and in-toto statements.

securesystemslib's DSSE implementation verifies each envelope against the key it names;
in-toto-attestation's Statement v1 model validates each statement. Run by
tests/interop.rs with a cases file; prints one line per case. Also signs an envelope of
its own with the seed it is given, for custos to verify the other way round.
"""

import base64
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey


def key(spec):
    raw = base64.b64decode(spec["public_key"])
    return SSlibKey(spec["keyid"], "ed25519", "ed25519", {"public": raw.hex()})


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    for case in cases["envelopes"]:
        name = case["name"]
        try:
            envelope = Envelope.from_dict(case["envelope"])
            envelope.verify([key(k) for k in case["keys"]], 1)
            if envelope.payload_type != "application/vnd.in-toto+json":
                raise ValueError(f"payload type {envelope.payload_type}")
            statement = Statement.copy_from_pb(json_format.Parse(envelope.payload, statement_pb2.Statement()))
            statement.validate()
            print(f"{name} ok {statement.pb.predicate_type} {statement.pb.subject[0].digest['sha256']}")
        except Exception as error:  # noqa: BLE001 - every refusal is a line of output
            print(f"{name} FAIL: {type(error).__name__}")

    # The other way round: an envelope securesystemslib signs, for custos to verify.
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(cases["python_seed"]))
    signer = CryptoSigner(private, key(cases["python_key"]))
    envelope = Envelope(cases["python_payload"].encode(), "application/vnd.in-toto+json", {})
    envelope.sign(signer)
    with open(cases["python_out"], "w") as f:
        json.dump(envelope.to_dict(), f)
    print("signed")


main()
