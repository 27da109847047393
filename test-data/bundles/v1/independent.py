"""Writes independent-python.tar.gz: an evidence bundle (custos-evidence-bundle/v1) made
without custos, from docs/forensics/evidence-locker.md's byte formats alone, signed by
the Ed25519 key whose seed is 32 bytes of 0x07. custos must verify it, in every version.
Also writes the fuzz seed fuzz/seeds/bundle_archive/ (the same tar, uncompressed).

Run from the repository root: python3 test-data/bundles/v1/independent.py
"""

import base64
import gzip
import hashlib
import io
import json
import tarfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def sha256(data):
    return hashlib.sha256(data).digest()


def root(leaves):
    """RFC 6962's Merkle tree hash over leaf hashes."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + root(leaves[:k]) + root(leaves[k:]))


files = {
    "artifacts/alert.json": b'{"alert":"mfa fatigue"}',
    "artifacts/notes.txt": b"analyst notes\n",
    "proofs/timeline.json": b"{}",
}
entries = [
    {"path": p, "size": len(b), "sha256": sha256(b).hex(), "media_type": "application/octet-stream"}
    for p, b in sorted(files.items())
]
merkle_root = root([sha256(b"\x00" + f"{e['sha256']} {e['size']} {e['path']}".encode()) for e in entries]).hex()
key = Ed25519PrivateKey.from_private_bytes(bytes([7] * 32))
public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
keyid = "ed25519:" + hashlib.sha256(public).hexdigest()[:16]
manifest = {
    "format": "custos-evidence-bundle/v1",
    "bundle_id": "evb-seed",
    "tenant_id": "acme",
    "case_id": "IR-7",
    "kind": "case",
    "resource_id": "IR-7",
    "created_at": "2026-11-23T10:00:00Z",
    "created_by": "seed",
    "custos_version": "0.1.0",
    "deployment": "custos.fuzz",
    "key_id": keyid,
    "files": entries,
    "merkle_root": merkle_root,
}
manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
payload_type = "application/vnd.custos.evidence-manifest+json"
pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(manifest_bytes), manifest_bytes)
envelope = {
    "payload": base64.b64encode(manifest_bytes).decode(),
    "payloadType": payload_type,
    "signatures": [{"keyid": keyid, "sig": base64.b64encode(key.sign(pae)).decode()}],
}
contents = dict(files)
contents["manifest.json"] = manifest_bytes
contents["manifest.dsse.json"] = (json.dumps(envelope, indent=2) + "\n").encode()
contents["root.merkle"] = (merkle_root + "\n").encode()
archive = io.BytesIO()
with tarfile.open(fileobj=archive, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    for path in sorted(contents):
        info = tarfile.TarInfo("evb-seed/" + path)
        info.size = len(contents[path])
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(contents[path]))
with open("test-data/bundles/v1/independent-python.tar.gz", "wb") as f:
    f.write(gzip.compress(archive.getvalue(), mtime=0))
with open("fuzz/seeds/bundle_archive/bundle.tar", "wb") as f:
    f.write(archive.getvalue())
with open("fuzz/seeds/bundle_archive/manifest.json", "wb") as f:
    f.write(manifest_bytes)
