"""Verify a custos bundle's provenance attestation offline, with securesystemslib only.

Usage: python3 verify_bundle_attestation.py ENVELOPE KEYS MANIFEST
(the attestation's DSSE envelope, the saved GET /v1/keys, the unpacked bundle's manifest.json)
"""
import base64, hashlib, json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def check(ok, failure):  # not `assert`, which `python -O` removes
    if not ok:
        sys.exit(f"NOT verified: {failure}")


envelope_file, keys_file, manifest_file = sys.argv[1:4]
keys = [
    SSlibKey(k["key_id"], "ed25519", "ed25519", {"public": base64.b64decode(k["public_key"]).hex()})
    for k in json.load(open(keys_file))["keys"]
]
envelope = Envelope.from_dict(json.load(open(envelope_file)))
envelope.verify(keys, 1)  # raises unless a published key signed it
check(envelope.payload_type == "application/vnd.in-toto+json", "payload_type")
statement = json.loads(envelope.payload)
check(statement["_type"] == "https://in-toto.io/Statement/v1", "statement_type")
check(statement["predicateType"] == "https://slsa.dev/provenance/v1", "predicate_type")
manifest_bytes = open(manifest_file, "rb").read()
digest = hashlib.sha256(manifest_bytes).hexdigest()
check(any(s["digest"].get("sha256") == digest for s in statement["subject"]), "subject_digest: not about this manifest")

# Whose statement it is. The same key also countersigns platforms' reports of their own
# artifacts; a bundle's provenance is custos's own, of the tenant its manifest names.
manifest = json.loads(manifest_bytes)
definition = statement["predicate"]["buildDefinition"]
details = statement["predicate"]["runDetails"]
internal = definition.get("internalParameters", {})
check(definition["buildType"] == "https://custos.dev/evidence-bundle/v1", "build_type: not a bundle's provenance")
check("reported_by" not in internal, "build_type: a platform's report, not custos's provenance")
host, _, path = details["builder"]["id"].removeprefix("https://").partition("/")
check(details["builder"]["id"].startswith("https://") and host and path == "custos", "builder: not custos's own")
tenant = definition["externalParameters"].get("tenant_id")
check(tenant == manifest["tenant_id"] and internal.get("tenant_id", tenant) == tenant, "tenant: disagrees")
check(details["metadata"]["invocationId"] == manifest["bundle_id"], "predicate: about another bundle")
print("verified:", statement["subject"][0]["name"], digest, "tenant", tenant)
