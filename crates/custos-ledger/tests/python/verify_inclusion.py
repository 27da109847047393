"""Checks a custos evidence bundle's inclusion proofs with no custos code: RFC 9162
section 2.1.3.2 over the leaf files' bytes, to the root of each log's checkpoint.
(The checkpoint's signature is checked by `custos forensic verify`, or by any C2SP
signed-note verifier.) Usage: verify_inclusion.py <bundle directory>. Prints one line
per proof; exits 1 on the first that fails."""

import base64
import glob
import hashlib
import json
import os
import sys


def verify_inclusion(index, size, leaf, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


os.chdir(sys.argv[1])
proofs = sorted(glob.glob("proofs/*/*.json"))
if not proofs:
    print("FAIL no proofs")
    sys.exit(1)
for proof_file in proofs:
    proof = json.load(open(proof_file))
    origin, size, root_b64 = open(f"proofs/{proof['log']}.checkpoint").read().split("\n")[:3]
    leaf = hashlib.sha256(b"\x00" + open(proof["leaf"], "rb").read()).digest()
    path = [base64.b64decode(h) for h in proof["audit_path"]]
    ok = int(size) == proof["tree_size"] and verify_inclusion(
        proof["leaf_index"], proof["tree_size"], leaf, path, base64.b64decode(root_b64)
    )
    print("ok  " if ok else "FAIL", proof["leaf"], "in", origin, "at size", size)
    if not ok:
        sys.exit(1)
