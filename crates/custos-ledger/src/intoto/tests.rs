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
                external_parameters: serde_json::json!({"tenant_id": "acme", "kind": "case", "case_id": "IR-7"})
                    .as_object()
                    .unwrap()
                    .clone(),
                internal_parameters: Some(
                    serde_json::json!({"tenant_id": "acme", "custos_version": "0.1.0"}).as_object().unwrap().clone(),
                ),
                resolved_dependencies: vec![ResourceDescriptor::sha256("artifacts/edr.json", "ab".repeat(32))],
            },
            run_details: RunDetails {
                builder: Builder {
                    id: "https://custos.example.com/custos".into(),
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
    let verified =
        verify_provenance(&envelope, &[signer().public_key()], &DIGEST.to_uppercase(), Some("acme")).unwrap();
    assert_eq!(verified.statement, provenance());
    assert_eq!(verified.subject.name.as_deref(), Some("bundle-01J9.tar.gz"));
    assert_eq!(verified.signed_by, [signer().key_id()]);
    assert_eq!((verified.origin, verified.tenant_id.as_str()), (Origin::Custos, "acme"));
}

/// A valid signature is not enough: the type, the predicate type and the subject are
/// enforced too.
#[test]
fn signed_statements_about_something_else_are_refused() {
    let keys = [signer().public_key()];
    let other = "0".repeat(64);
    assert!(matches!(
        verify_provenance(&provenance().sign(&[&signer()]), &keys, &other, None),
        Err(AttestationError::SubjectDigest { expected, found }) if expected == other && found == format!("bundle-01J9.tar.gz sha256:{DIGEST}")
    ));

    let mut vsa = provenance();
    vsa.predicate_type = "https://slsa.dev/verification_summary/v1".into();
    assert!(matches!(
        verify_provenance(&vsa.sign(&[&signer()]), &keys, DIGEST, None),
        Err(AttestationError::PredicateType { found, .. }) if found == "https://slsa.dev/verification_summary/v1"
    ));

    let mut old = provenance();
    old.statement_type = "https://in-toto.io/Statement/v0.1".into();
    assert!(matches!(
        verify_provenance(&old.sign(&[&signer()]), &keys, DIGEST, None),
        Err(AttestationError::StatementType { .. })
    ));

    let manifest = Envelope::sign("application/vnd.custos.manifest+json", &provenance().to_payload(), &[&signer()]);
    assert!(matches!(
        verify_provenance(&manifest, &keys, DIGEST, None),
        Err(AttestationError::Envelope(DsseError::PayloadType { .. }))
    ));

    let hollow = Statement {
        statement_type: STATEMENT_TYPE.to_owned(),
        subject: vec![ResourceDescriptor::sha256("x", DIGEST)],
        predicate_type: SLSA_PROVENANCE.to_owned(),
        predicate: serde_json::json!({"buildDefinition": {}}),
    };
    assert!(matches!(
        verify_provenance(&hollow.sign(&[&signer()]), &keys, DIGEST, None),
        Err(AttestationError::Predicate { .. })
    ));

    let not_json = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, b"not json", &[&signer()]);
    assert!(matches!(verify_provenance(&not_json, &keys, DIGEST, None), Err(AttestationError::Malformed(_))));

    let stranger = DsseSigner::new(&[3; 32]);
    assert!(matches!(
        verify_provenance(&provenance().sign(&[&stranger]), &keys, DIGEST, None),
        Err(AttestationError::Envelope(DsseError::NoKnownSignature { .. }))
    ));
}

/// A platform's report as custos signs it: any build type but custos's own, built by the
/// platform builder, the tenant in `internalParameters`.
fn platform_report(build_type: &str, builder: &str, tenant: Option<&str>) -> Statement<Provenance> {
    let mut statement = provenance();
    let definition = &mut statement.predicate.build_definition;
    definition.build_type = build_type.into();
    definition.external_parameters = serde_json::json!({"tenant_id": "acme"}).as_object().unwrap().clone();
    let mut internal = serde_json::json!({"reported_by": "tok_evil"}).as_object().unwrap().clone();
    if let Some(tenant) = tenant {
        internal.insert("tenant_id".into(), tenant.into());
    }
    definition.internal_parameters = Some(internal);
    statement.predicate.run_details.builder.id = builder.into();
    statement
}

fn refused_field(statement: &Statement<Provenance>, tenant: Option<&str>) -> Option<OriginField> {
    match verify_provenance(&statement.sign(&[&signer()]), &[signer().public_key()], DIGEST, tenant) {
        Err(AttestationError::Origin { field, .. }) => Some(field),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => None,
    }
}

/// The forgery this check exists for: tenant `evil` asking custos to sign a statement
/// with custos's bundle build type and `externalParameters.tenant_id = "acme"`. Whatever
/// builder it names, it is refused, and the refusal names the field that disagrees.
#[test]
fn a_platform_report_cannot_pass_for_custos_own_provenance() {
    let platform = "https://custos.example.com/custos/platform";
    let own = "https://custos.example.com/custos";
    // As the API signs platform reports since this check: refused by the builder.
    assert_eq!(
        refused_field(&platform_report(BUNDLE_BUILD_TYPE, platform, Some("evil")), None),
        Some(OriginField::Builder)
    );
    // As the API signed them before: the builder agrees, but the report gives itself away.
    assert_eq!(
        refused_field(&platform_report(BUNDLE_BUILD_TYPE, own, Some("evil")), None),
        Some(OriginField::BuildType)
    );
    let mut two_tenants = provenance();
    two_tenants.predicate.build_definition.internal_parameters =
        Some(serde_json::json!({"tenant_id": "evil"}).as_object().unwrap().clone());
    assert_eq!(refused_field(&two_tenants, None), Some(OriginField::Tenant));
    let mut no_tenant = provenance();
    no_tenant.predicate.build_definition.external_parameters.remove("tenant_id");
    assert_eq!(refused_field(&no_tenant, None), Some(OriginField::Tenant));

    // A platform's report verifies as one, for its own tenant only.
    let report = platform_report("https://platform.example/rule-pack/v2", platform, Some("evil"));
    let verified =
        verify_provenance(&report.sign(&[&signer()]), &[signer().public_key()], DIGEST, Some("evil")).unwrap();
    assert_eq!((verified.origin, verified.tenant_id.as_str()), (Origin::Platform, "evil"));
    assert_eq!(refused_field(&report, Some("acme")), Some(OriginField::Tenant));
    assert_eq!(refused_field(&platform_report(PLATFORM_BUILD_TYPE, platform, Some("evil")), None), None);
    // ... and never as custos's own builder's, nor without its tenant.
    assert_eq!(
        refused_field(&platform_report("https://platform.example/rule-pack/v2", own, Some("evil")), None),
        Some(OriginField::Builder)
    );
    assert_eq!(
        refused_field(&platform_report("https://platform.example/rule-pack/v2", platform, None), None),
        Some(OriginField::Tenant)
    );
    // custos's own provenance is refused for another tenant.
    assert_eq!(refused_field(&provenance(), Some("evil")), Some(OriginField::Tenant));
}

#[test]
fn build_types_under_custos_dev_are_reserved() {
    for reserved in [
        BUNDLE_BUILD_TYPE,
        "https://custos.dev/export/v1",
        "HTTPS://CUSTOS.DEV/evidence-bundle/v1",
        "https://custos.dev./evidence-bundle/v1",
        "https://custos.dev:443/evidence-bundle/v1",
        "https://user@custos.dev/x",
        "http://custos.dev",
        "urn://custos.dev?x",
    ] {
        assert!(is_reserved_build_type(reserved), "{reserved}");
    }
    for free in [
        PLATFORM_BUILD_TYPE,
        "https://platform.example/rule-pack/v2",
        "https://custos.dev.example/x",
        "https://example.com/custos.dev/x",
        "https://notcustos.dev/x",
        "custos.dev",
    ] {
        assert!(!is_reserved_build_type(free), "{free}");
    }
}
