//! `POST /v1/attestations/verify`: provenance checked against a subject digest with the
//! deployment's published keys; the verdict is data, bad input a 422.

use custos_ledger::dsse::{DsseSigner, Envelope};
use custos_ledger::intoto::{
    BuildDefinition, BuildMetadata, Builder, Provenance, ResourceDescriptor, RunDetails, Statement,
};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, error, json};

fn provenance(digest: &str, finished_on: Option<&str>) -> Statement<Provenance> {
    Statement::provenance(
        vec![ResourceDescriptor::sha256("export-2026-11.parquet", digest)],
        Provenance {
            build_definition: BuildDefinition {
                build_type: "https://platform.example/export/v1".into(),
                external_parameters: json!({"table": "rule_runs"}).as_object().unwrap().clone(),
                internal_parameters: Some(json!({"tenant_id": "acme"}).as_object().unwrap().clone()),
                resolved_dependencies: vec![],
            },
            run_details: RunDetails {
                builder: Builder {
                    id: "https://custos.local/custos/platform".into(),
                    version: Default::default(),
                    builder_dependencies: vec![],
                },
                metadata: finished_on.map(|at| BuildMetadata {
                    invocation_id: None,
                    started_on: None,
                    finished_on: Some(at.into()),
                }),
                byproducts: vec![],
            },
        },
    )
}

async fn verify(app: &TestApp, envelope: &Envelope, digest: &str) -> (u16, Value) {
    let body = json!({"envelope": envelope, "subject_sha256": digest});
    json(app.client.post(app.url("/v1/attestations/verify")).json(&body).send().await.unwrap()).await
}

async fn attestations_verify_against_published_keys(backend: Backend) {
    let (app, key) = crate::ledger::app_and_key(backend).await;
    let digest = "ab".repeat(32);
    let signer = key.dsse_signer();
    assert_eq!(signer.key_id(), key.key_id());

    // No token needed, like /v1/keys.
    let (status, verdict) = verify(&app, &provenance(&digest, None).sign(&[&signer]), &digest.to_uppercase()).await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["signed_by"], json!([key.key_id()]));
    assert_eq!(verdict["subject"]["name"], "export-2026-11.parquet");
    assert_eq!(verdict["statement"]["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!((verdict["origin"].as_str(), verdict["tenant_id"].as_str()), (Some("platform"), Some("acme")));

    // Each refusal names its check.
    let refusals = [
        (provenance(&"cd".repeat(32), None).sign(&[&signer]), "subject_digest"),
        (provenance(&digest, None).sign(&[&DsseSigner::new(&[3; 32])]), "signature"),
        (provenance(&digest, Some("2000-01-01T00:00:00Z")).sign(&[&signer]), "key_window"),
        (Envelope::sign("application/json", &provenance(&digest, None).to_payload(), &[&signer]), "payload_type"),
    ];
    for (envelope, check) in refusals {
        let (status, verdict) = verify(&app, &envelope, &digest).await;
        assert_eq!(
            (status, verdict["verified"].as_bool(), verdict["check"].as_str()),
            (200, Some(false), Some(check)),
            "{verdict}"
        );
        assert!(verdict["error"].is_string());
    }
    let mut vsa = provenance(&digest, None);
    vsa.predicate_type = "https://slsa.dev/verification_summary/v1".into();
    let (_, verdict) = verify(&app, &vsa.sign(&[&signer]), &digest).await;
    assert_eq!(verdict["check"], "predicate_type");
    let now = custos_model::Timestamp::now().to_string();
    let (_, verdict) = verify(&app, &provenance(&digest, Some(&now)).sign(&[&signer]), &digest).await;
    assert_eq!(verdict["verified"], true, "{verdict}");

    // Bad input is a 422 naming the field, and the body is bounded.
    let url = app.url("/v1/attestations/verify");
    let envelope = provenance(&digest, None).sign(&[&signer]);
    let short = json!({"envelope": envelope, "subject_sha256": "abc"});
    let refused = error(app.client.post(&url).json(&short).send().await.unwrap(), 422, "invalid_field").await;
    assert_eq!(refused["field"], "subject_sha256");
    let bad = json!({"envelope": {"payload": 1}, "subject_sha256": digest});
    let refused = error(app.client.post(&url).json(&bad).send().await.unwrap(), 422, "invalid_field").await;
    assert_eq!(refused["field"], "envelope");
    let huge = vec![b' '; 1024 * 1024 + 1];
    let response = app.client.post(&url).header("content-type", "application/json").body(huge).send().await.unwrap();
    error(response, 413, "payload_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_verify_against_published_keys_on_sqlite() {
    attestations_verify_against_published_keys(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_verify_against_published_keys_on_postgres() {
    attestations_verify_against_published_keys(Backend::Postgres).await;
}
