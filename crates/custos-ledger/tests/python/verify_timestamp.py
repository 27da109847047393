"""An independent RFC 3161 reader checks the tokens custos keeps.

rfc3161-client (Trail of Bits) verifies a token, as custos keeps it in a bundle's
timestamp.tsr, over a Merkle root with a pinned TSA certificate. It reads time-stamp
responses, so the token is wrapped in a granted one (status 0) first. Prints "ok" or
"FAIL: <reason>". Arguments: the token file, the root (hex), the certificate (PEM).
"""

import sys

import cryptography.x509
from rfc3161_client import VerifierBuilder, decode_timestamp_response


def der_length(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def main():
    token = open(sys.argv[1], "rb").read()
    root = bytes.fromhex(sys.argv[2])
    certificate = cryptography.x509.load_pem_x509_certificate(open(sys.argv[3], "rb").read())
    granted = b"\x30\x03\x02\x01\x00"
    response = b"\x30" + der_length(len(granted) + len(token)) + granted + token
    try:
        decoded = decode_timestamp_response(response)
        verifier = VerifierBuilder(tsa_certificate=certificate, roots=[certificate]).build()
        verifier.verify(decoded, root)
        print("ok", decoded.tst_info.gen_time.isoformat())
    except Exception as error:  # noqa: BLE001 - every refusal is a line of output
        print(f"FAIL: {type(error).__name__}: {error}")


main()
