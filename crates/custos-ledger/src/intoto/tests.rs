use super::*;

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn signer() -> DsseSigner {
    DsseSigner::new(&[9; 32])
}

fn provenance() -> Statement<Provenance> {
    Statement::provenance(
        vec![ResourceDescriptor::sha256("bundle-01J9.tar.gz", DIGEST)],
        Provenance {
            build_definition: BuildDefinition {
                build_type: "https://custos.dev/evidence-bundle/v1".into(),
                external_parameters: serde_json::json!({"kind": "case", "case_id": "IR-7"})
                    .as_object()
                    .unwrap()
                    .clone(),
                internal_parameters: Some(serde_json::json!({"custos_version": "0.1.0"}).as_object().unwrap().clone()),
                resolved_dependencies: vec![ResourceDescriptor::sha256("artifacts/edr.json", "ab".repeat(32))],
            },
            run_details: RunDetails {
                builder: Builder {
                    id: "https://custos.example.com/custos.local".into(),
                    version: BTreeMap::from([("custos".into(), "0.1.0".into())]),
                    builder_dependencies: vec![],
                },
                metadata: Some(BuildMetadata {
                    invocation_id: Some("01J9ZQ4W8K6T1V3X5Y7Z9A1B2C".into()),
                    started_on: Some("2026-11-23T10:00:00Z".into()),
                    finished_on: Some("2026-11-23T10:00:02Z".into()),
                }),
                byproducts: vec![],
            },
        },
    )
}

/// The statement's JSON, field for field as in-toto and SLSA name them.
#[test]
fn the_statement_format() {
    let json: serde_json::Value = serde_json::from_slice(&provenance().to_payload()).unwrap();
    insta::assert_json_snapshot!(json);
}

#[test]
fn a_signed_provenance_verifies_for_its_subject() {
    let envelope = provenance().sign(&[&signer()]);
    assert_eq!(envelope.payload_type, PAYLOAD_TYPE_IN_TOTO);
    let verified = verify_provenance(&envelope, &[signer().public_key()], &DIGEST.to_uppercase()).unwrap();
    assert_eq!(verified.statement, provenance());
    assert_eq!(verified.subject.name.as_deref(), Some("bundle-01J9.tar.gz"));
    assert_eq!(verified.signed_by, [signer().key_id()]);
}

/// A valid signature is not enough: the type, the predicate type and the subject are
/// enforced too.
#[test]
fn signed_statements_about_something_else_are_refused() {
    let keys = [signer().public_key()];
    let other = "0".repeat(64);
    assert!(matches!(
        verify_provenance(&provenance().sign(&[&signer()]), &keys, &other),
        Err(AttestationError::SubjectDigest { expected, found }) if expected == other && found == format!("bundle-01J9.tar.gz sha256:{DIGEST}")
    ));

    let mut vsa = provenance();
    vsa.predicate_type = "https://slsa.dev/verification_summary/v1".into();
    assert!(matches!(
        verify_provenance(&vsa.sign(&[&signer()]), &keys, DIGEST),
        Err(AttestationError::PredicateType { found, .. }) if found == "https://slsa.dev/verification_summary/v1"
    ));

    let mut old = provenance();
    old.statement_type = "https://in-toto.io/Statement/v0.1".into();
    assert!(matches!(
        verify_provenance(&old.sign(&[&signer()]), &keys, DIGEST),
        Err(AttestationError::StatementType { .. })
    ));

    let manifest = Envelope::sign("application/vnd.custos.manifest+json", &provenance().to_payload(), &[&signer()]);
    assert!(matches!(
        verify_provenance(&manifest, &keys, DIGEST),
        Err(AttestationError::Envelope(DsseError::PayloadType { .. }))
    ));

    let hollow = Statement {
        statement_type: STATEMENT_TYPE.to_owned(),
        subject: vec![ResourceDescriptor::sha256("x", DIGEST)],
        predicate_type: SLSA_PROVENANCE.to_owned(),
        predicate: serde_json::json!({"buildDefinition": {}}),
    };
    assert!(matches!(
        verify_provenance(&hollow.sign(&[&signer()]), &keys, DIGEST),
        Err(AttestationError::Predicate { .. })
    ));

    let not_json = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, b"not json", &[&signer()]);
    assert!(matches!(verify_provenance(&not_json, &keys, DIGEST), Err(AttestationError::Malformed(_))));

    let stranger = DsseSigner::new(&[3; 32]);
    assert!(matches!(
        verify_provenance(&provenance().sign(&[&stranger]), &keys, DIGEST),
        Err(AttestationError::Envelope(DsseError::NoKnownSignature { .. }))
    ));
}
