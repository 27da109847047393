//! The evidence locker from the command line: `forensic artifact upload` (streamed, with
//! progress), `forensic snapshot create` (seal, then optionally download with progress)
//! and `forensic attest show` (a provenance attestation, pretty-printed and verified,
//! offline or looked up on the server).

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use custos_ledger::bundle::{MANIFEST, TrustedKey};
use custos_ledger::dsse::{DsseKey, Envelope};
use custos_ledger::intoto::{Origin, VerifiedAttestation, verify_provenance};
use futures::StreamExt as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tracing::Instrument as _;

use super::forensic_bundle::usage;
use crate::cli::{ArtifactUploadArgs, AttestShowArgs, ServerConnection, SnapshotCreateArgs, SnapshotScope};

fn progress_bar(total: Option<u64>, message: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(total) => {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        }
    };
    bar.set_message(message.to_owned());
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// A file's bytes as a stream of 256 KiB chunks, for a streamed request body.
pub(crate) fn file_chunks(file: tokio::fs::File) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> {
    futures::stream::unfold(file, |mut file| async move {
        let mut chunk = vec![0u8; 256 * 1024];
        match tokio::io::AsyncReadExt::read(&mut file, &mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(chunk), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

pub async fn artifact_upload(connection: &ServerConnection, args: &ArtifactUploadArgs) -> anyhow::Result<()> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| usage(format!("{}: name it with --name", args.file.display())))?,
    };
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| usage(format!("cannot read {}: {e}", args.file.display())))?;
    let size = file.metadata().await?.len();
    let path = format!("/v1/tenants/{}/evidence/cases/{}/artifacts/{name}", args.tenant, args.case);
    let (builder, span, trace_id) = super::incidents::authorized(connection, reqwest::Method::PUT, &path)?;
    let bar = progress_bar(Some(size), &format!("uploading {name}"));
    let counted = bar.clone();
    let stream = file_chunks(file).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counted.inc(chunk.len() as u64);
        }
    });
    let response = builder
        .header("content-type", &args.media_type)
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .instrument(span.clone())
        .await
        .context("reaching the server")?;
    bar.finish_and_clear();
    let artifact = super::incidents::answer(response, &span).await?;
    if args.json {
        println!("{}", json!({"artifact": artifact, "trace_id": trace_id}));
        return Ok(());
    }
    println!(
        "uploaded {} to case {} ({} bytes)",
        artifact["name"].as_str().unwrap_or(&name),
        args.case,
        artifact["size"]
    );
    println!("  sha256    {}", artifact["sha256"].as_str().unwrap_or_default());
    println!("  event     {}", artifact["event_id"].as_str().unwrap_or_default());
    println!("  trace_id  {trace_id}");
    Ok(())
}

pub async fn snapshot_create(connection: &ServerConnection, args: &SnapshotCreateArgs) -> anyhow::Result<()> {
    let kind = match args.scope {
        SnapshotScope::Case => "case",
        SnapshotScope::Eval => "evaluation",
        SnapshotScope::Job => "job",
        SnapshotScope::Export => "export",
    };
    let mut body = json!({"kind": kind, "case_id": args.case});
    if let Some(id) = &args.id {
        body["resource_id"] = json!(id);
    }
    let (builder, span, trace_id) = super::incidents::authorized(
        connection,
        reqwest::Method::POST,
        &format!("/v1/tenants/{}/evidence/snapshots", args.tenant),
    )?;
    let what = match &args.id {
        Some(id) if kind != "case" => format!("sealing {kind} {id} into case {}", args.case),
        _ => format!("sealing case {}", args.case),
    };
    let bar = progress_bar(None, &what);
    let response = builder.json(&body).send().instrument(span.clone()).await.context("reaching the server")?;
    let sealed = super::incidents::answer(response, &span).await;
    bar.finish_and_clear();
    let sealed = sealed?;
    let bundle = sealed["bundle_id"].as_str().context("the answer names no bundle")?.to_owned();
    let downloaded = match &args.output {
        Some(output) => Some(download(connection, &args.tenant, &bundle, output, sealed["bytes"].as_u64()).await?),
        None => None,
    };
    if args.json {
        let mut out = json!({"bundle": sealed, "trace_id": trace_id});
        if let (Some(path), Some((size, digest))) = (&args.output, &downloaded) {
            out["download"] = json!({"path": path, "bytes": size, "sha256": digest});
        }
        println!("{out}");
        return Ok(());
    }
    let text = |key: &str| sealed[key].as_str().unwrap_or_default().to_owned();
    println!("sealed bundle {bundle}");
    println!("  case         {}", text("case_id"));
    println!("  kind         {} {}", text("kind"), text("resource_id"));
    println!("  files        {} ({} bytes)", sealed["files"], sealed["bytes"]);
    println!("  merkle root  {}", text("merkle_root"));
    println!("  manifest     sha256 {}", text("manifest_sha256"));
    let signers: Vec<&str> =
        sealed["signed_by"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    println!("  signed by    {}", signers.join(", "));
    println!("  attestation  {}", text("attestation_id"));
    println!("  trace_id     {trace_id}");
    if let (Some(path), Some((size, digest))) = (&args.output, &downloaded) {
        println!("  saved        {} ({size} bytes, sha256 {digest})", path.display());
    }
    Ok(())
}

/// Downloads a bundle's archive to `output`, with progress; its size and SHA-256.
async fn download(
    connection: &ServerConnection,
    tenant: &str,
    bundle: &str,
    output: &Path,
    approximate: Option<u64>,
) -> anyhow::Result<(u64, String)> {
    let (builder, span, _) = super::incidents::authorized(
        connection,
        reqwest::Method::GET,
        &format!("/v1/tenants/{tenant}/evidence/{bundle}/download"),
    )?;
    let response = builder.send().instrument(span.clone()).await.context("reaching the server")?;
    if !response.status().is_success() {
        super::incidents::answer(response, &span).await?;
        bail!("the download failed");
    }
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?,
    );
    let bar = progress_bar(approximate, &format!("downloading {bundle}"));
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("downloading the bundle")?;
        file.write_all(&chunk)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        bar.set_position(size.min(approximate.unwrap_or(u64::MAX)));
    }
    file.flush()?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    bar.finish_and_clear();
    Ok((size, hex::encode(hasher.finalize())))
}

/// What `attest show` looks at: the subject's digest and how it was found.
struct Subject {
    /// SHA-256 of the subject, hex; `None` for a bundle id (the server's record says).
    digest: Option<String>,
    /// The bundle id, when the target is one.
    bundle_id: Option<String>,
    /// The tenant a bundle's manifest names: its provenance must be that tenant's.
    tenant: Option<String>,
    described: String,
}

/// The manifest bytes of a bundle: a directory's file, or the entry of an archive.
fn manifest_of(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    if path.is_dir() {
        return Ok(Some(
            std::fs::read(path.join(MANIFEST))
                .map_err(|e| usage(format!("{} is a directory without a readable {MANIFEST}: {e}", path.display())))?,
        ));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !(name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    for entry in archive.entries().map_err(|e| usage(format!("{}: {e}", path.display())))? {
        let mut entry = entry.map_err(|e| usage(format!("{}: {e}", path.display())))?;
        let entry_path = entry.path().map(|p| p.to_path_buf()).unwrap_or_default();
        let mut parts = entry_path.components();
        if parts.next().is_some() && parts.as_path() == Path::new(MANIFEST) {
            let mut bytes = Vec::new();
            entry.by_ref().take(custos_ledger::bundle::MAX_METADATA_BYTES).read_to_end(&mut bytes)?;
            return Ok(Some(bytes));
        }
    }
    Err(usage(format!("{} holds no <bundle>/{MANIFEST}", path.display())))
}

fn subject(target: &str) -> anyhow::Result<Subject> {
    let path = Path::new(target);
    if !path.exists() {
        if target.contains('/') || target.contains('.') {
            return Err(usage(format!("{target}: no such file, and not a bundle id")));
        }
        return Ok(Subject {
            digest: None,
            bundle_id: Some(target.to_owned()),
            tenant: None,
            described: format!("bundle {target}"),
        });
    }
    if let Some(manifest) = manifest_of(path)? {
        let digest = hex::encode(sha2::Sha256::digest(&manifest));
        let manifest = serde_json::from_slice::<Value>(&manifest).unwrap_or_default();
        let text = |field: &str| manifest[field].as_str().map(str::to_owned);
        return Ok(Subject {
            digest: Some(digest),
            bundle_id: text("bundle_id"),
            tenant: text("tenant_id"),
            described: format!("bundle {} (its {MANIFEST})", path.display()),
        });
    }
    let mut file = std::fs::File::open(path).map_err(|e| usage(format!("cannot read {target}: {e}")))?;
    let (_, digest) =
        custos_ledger::bundle::hash_reader(&mut file).map_err(|e| usage(format!("reading {target}: {e}")))?;
    Ok(Subject {
        digest: Some(hex::encode(digest)),
        bundle_id: None,
        tenant: None,
        described: format!("file {target}"),
    })
}

/// A bundle's provenance is custos's own, of the tenant its manifest names: a platform's
/// report about the same digest, or another tenant's statement, is not.
fn bundle_provenance(subject: &Subject, verified: VerifiedAttestation) -> Result<VerifiedAttestation, String> {
    if subject.bundle_id.is_none() {
        return Ok(verified);
    }
    if verified.origin != Origin::Custos {
        return Err("a platform's report about the bundle, not custos's provenance of it (build_type)".to_owned());
    }
    let invocation =
        verified.statement.predicate.run_details.metadata.as_ref().and_then(|m| m.invocation_id.as_deref());
    if invocation != subject.bundle_id.as_deref() {
        return Err(format!(
            "the statement is the provenance of bundle {invocation:?}, not of {:?} (predicate)",
            subject.bundle_id.as_deref().unwrap_or_default()
        ));
    }
    match &subject.tenant {
        Some(tenant) if *tenant != verified.tenant_id => Err(format!(
            "the statement is tenant {:?}'s, but the bundle's manifest names {tenant:?} (tenant)",
            verified.tenant_id
        )),
        _ => Ok(verified),
    }
}

pub async fn attest_show(connection: &ServerConnection, args: &AttestShowArgs) -> anyhow::Result<()> {
    let target = args.target.clone();
    let subject = tokio::task::spawn_blocking(move || subject(&target)).await.context("reading the target")??;
    let mut keys = super::forensic_bundle::load_keys(&args.keys, args.keyring.as_deref())?;
    let mut notes = Vec::new();

    // The attestations: the one given, or those the server holds about the subject.
    let envelopes: Vec<(Option<String>, Value)> = match &args.envelope {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| usage(format!("reading --envelope {}: {e}", path.display())))?;
            let value: Value =
                serde_json::from_slice(&text).map_err(|e| usage(format!("--envelope {}: {e}", path.display())))?;
            vec![(None, value)]
        }
        None => {
            let tenant = args.tenant.as_ref().ok_or_else(|| {
                usage("without --envelope, name the --tenant whose attestations to look up on the server".into())
            })?;
            let query = match (&subject.digest, &subject.bundle_id) {
                (Some(digest), _) => format!("subject_sha256={digest}"),
                (None, Some(id)) => format!("subject_id={id}"),
                (None, None) => unreachable!("a subject has a digest or an id"),
            };
            let (builder, span, _) = super::incidents::authorized(
                connection,
                reqwest::Method::GET,
                &format!("/v1/tenants/{tenant}/attestations?{query}"),
            )?;
            let response = builder.send().instrument(span.clone()).await.context("reaching the server")?;
            let found = super::incidents::answer(response, &span).await?;
            found
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|a| (a["attestation_id"].as_str().map(str::to_owned), a["envelope"].clone()))
                        .collect()
                })
                .unwrap_or_default()
        }
    };
    if subject.digest.is_none() {
        notes.push("the subject's digest is the server's record: hold the bundle to check it yourself".to_owned());
    }
    if keys.is_empty() {
        let (builder, span, _) = super::incidents::authorized(connection, reqwest::Method::GET, "/v1/keys")?;
        let text = builder.send().instrument(span).await.context("fetching /v1/keys")?.bytes().await?;
        keys =
            custos_ledger::bundle::parse_keyring(&text).map_err(|e| anyhow::anyhow!("the server's /v1/keys: {e}"))?;
        notes.push(
            "keys taken from the server's /v1/keys: this checks integrity, not trust; pin --key or --keyring".into(),
        );
    }
    let dsse_keys: Vec<DsseKey> = keys.iter().map(|k: &TrustedKey| k.key.clone()).collect();

    let mut results = Vec::new();
    for (id, envelope) in &envelopes {
        let parsed: Result<Envelope, String> = serde_json::from_value(envelope.clone()).map_err(|e| e.to_string());
        let statement_digest = subject.digest.clone().or_else(|| {
            // A bundle id: the statement's own subject digest, as recorded.
            let payload = parsed.as_ref().ok()?.payload.clone();
            let statement: Value = serde_json::from_slice(&custos_ledger::dsse::decode_base64(&payload)?).ok()?;
            statement["subject"][0]["digest"]["sha256"].as_str().map(str::to_owned)
        });
        let verdict = match (parsed, statement_digest) {
            (Err(e), _) => Err(format!("not a DSSE envelope: {e}")),
            (Ok(_), None) => Err("the statement names no sha256 subject".to_owned()),
            (Ok(envelope), Some(digest)) => verify_provenance(&envelope, &dsse_keys, &digest, args.tenant.as_deref())
                .map_err(|e| format!("{} ({})", e, e.check()))
                .and_then(|verified| bundle_provenance(&subject, verified)),
        };
        results.push((id.clone(), verdict));
    }
    let verified = results.iter().filter(|(_, v)| v.is_ok()).count();
    if args.json {
        let items: Vec<Value> = results
            .iter()
            .map(|(id, verdict)| match verdict {
                Ok(v) => json!({"attestation_id": id, "verified": true, "signed_by": v.signed_by,
                    "origin": v.origin, "tenant_id": v.tenant_id, "statement": v.statement}),
                Err(e) => json!({"attestation_id": id, "verified": false, "error": e}),
            })
            .collect();
        println!(
            "{}",
            json!({"subject": subject.described, "sha256": subject.digest, "attestations": items, "notes": notes})
        );
    } else {
        println!("provenance of {}", subject.described);
        if let Some(digest) = &subject.digest {
            println!("  sha256  {digest}");
        }
        for (id, verdict) in &results {
            let name = id.as_deref().unwrap_or("the envelope");
            match verdict {
                Ok(v) => {
                    let origin = match v.origin {
                        Origin::Custos => "custos's own provenance",
                        Origin::Platform => "a platform's report, countersigned",
                    };
                    println!(
                        "\nverified {name}, signed by {}: {origin}, tenant {}",
                        v.signed_by.join(", "),
                        v.tenant_id
                    );
                    println!("{}", serde_json::to_string_pretty(&v.statement).unwrap_or_default());
                }
                Err(e) => println!("\nNOT verified {name}: {e}"),
            }
        }
        for note in &notes {
            eprintln!("note: {note}");
        }
    }
    if envelopes.is_empty() {
        bail!("no attestation found for {}", subject.described);
    }
    if verified == 0 {
        bail!("no attestation of {} verifies", subject.described);
    }
    Ok(())
}
