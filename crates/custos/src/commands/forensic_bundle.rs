//! `custos forensic verify`: an evidence bundle verified offline, streaming, with
//! nothing but trusted public keys (custos-ledger's [`Verifier`]).

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use custos_ledger::bundle::{BundleReport, TrustedKey, Verifier, check_bundle_attestation, parse_keyring};
use custos_ledger::dsse::{DsseKey, Envelope, decode_base64};
use custos_ledger::intoto::VerifiedAttestation;
use custos_ledger::note::NoteVerifier;

use super::UsageError;
use crate::cli::VerifyBundleArgs;

pub(crate) fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(message))
}

/// Reads `--key` values: a raw Ed25519 public key in base64, or a signed-note verifier
/// key (`custos keys export-public`); `@FILE` for a file of them, one per line.
fn trusted_keys(values: &[String]) -> anyhow::Result<Vec<TrustedKey>> {
    let mut keys = Vec::new();
    for line in super::forensic::key_lines(values)? {
        let raw: Option<[u8; 32]> = match NoteVerifier::parse(&line) {
            Ok(verifier) => Some(verifier.public_key()),
            Err(_) => decode_base64(&line).and_then(|bytes| bytes.try_into().ok()),
        };
        let key = raw.and_then(|raw| DsseKey::from_bytes(&raw)).ok_or_else(|| {
            usage(format!(
                "--key {line:?}: expected an Ed25519 public key in base64 (public_key in /v1/keys) or a verifier \
                 key (custos keys export-public)"
            ))
        })?;
        keys.push(TrustedKey { key, not_before: None, not_after: None });
    }
    Ok(keys)
}

/// The keys of `--key` values and a `--keyring` file.
pub(crate) fn load_keys(values: &[String], keyring: Option<&Path>) -> anyhow::Result<Vec<TrustedKey>> {
    let mut keys = trusted_keys(values)?;
    if let Some(path) = keyring {
        let json = std::fs::read(path).map_err(|e| usage(format!("reading --keyring {}: {e}", path.display())))?;
        keys.extend(parse_keyring(&json).map_err(|e| usage(format!("--keyring {}: {e}", path.display())))?);
    }
    Ok(keys)
}

/// Largest attestation file read: an envelope of a statement naming every file of a bundle.
const MAX_ATTESTATION_BYTES: u64 = 16 * 1024 * 1024;

pub async fn verify(args: &VerifyBundleArgs) -> anyhow::Result<()> {
    let keys = load_keys(&args.keys, args.keyring.as_deref())?;
    let attestation = args.attestation.as_deref().map(read_attestation).transpose()?;
    let mut verifier = Verifier::new(keys.clone());
    if let Some(path) = &args.tsa_cert {
        let certificates = crate::settings::tsa_certificates(path).map_err(|e| usage(format!("--tsa-cert: {e:#}")))?;
        verifier = verifier.with_tsa_certificates(certificates);
    }
    let path = args.bundle.clone();
    let metadata =
        std::fs::metadata(&path).map_err(|e| usage(format!("cannot read the bundle {}: {e}", path.display())))?;
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        if metadata.is_dir() {
            Ok::<_, anyhow::Error>(verifier.verify_dir(&path))
        } else {
            let file = std::fs::File::open(&path)
                .map_err(|e| usage(format!("cannot read the bundle {}: {e}", path.display())))?;
            Ok(verifier.verify_tar_gz(std::io::BufReader::with_capacity(1 << 20, file)))
        }
    })
    .await
    .context("the verifier stopped")??;
    let elapsed = started.elapsed();
    // The attestation is checked against what the bundle proved about itself: its
    // manifest's digest, its tenant, its id.
    let result = result.map(|report| {
        let provenance = attestation.as_ref().map(|envelope| check_bundle_attestation(&report, envelope, &keys));
        (report, provenance)
    });
    match result {
        Ok((report, Some(Err(error)))) => {
            tracing::warn!(check = error.check(), error = %error, "bundle attestation refused");
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "check": format!("attestation.{}", error.check()),
                        "error": error.to_string(), "bundle_id": report.bundle_id})
                );
            }
            anyhow::bail!("the bundle verifies, but its attestation does not ({}): {error}", error.check())
        }
        Ok((report, provenance)) => {
            let provenance = provenance.map(|verified| verified.expect("refusals are handled above"));
            tracing::info!(
                bundle_id = report.bundle_id.as_str(),
                files = report.files,
                bytes = report.bytes,
                "bundle verified"
            );
            print_report(&report, provenance.as_ref(), args.json, elapsed, &args.bundle)
        }
        Err(error) => {
            tracing::warn!(check = error.check(), error = %error, "bundle verification failed");
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "check": error.check(), "error": error.to_string()})
                );
            }
            anyhow::bail!("the bundle does not verify: {error}")
        }
    }
}

/// Reads `--attestation`: a DSSE envelope, bounded.
fn read_attestation(path: &Path) -> anyhow::Result<Envelope> {
    let file =
        std::fs::File::open(path).map_err(|e| usage(format!("reading --attestation {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    std::io::Read::take(file, MAX_ATTESTATION_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| usage(format!("reading --attestation {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_ATTESTATION_BYTES {
        return Err(usage(format!("--attestation {}: over 16 MiB", path.display())));
    }
    Envelope::parse(&bytes).map_err(|e| usage(format!("--attestation {}: not a DSSE envelope: {e}", path.display())))
}

fn print_report(
    report: &BundleReport,
    provenance: Option<&VerifiedAttestation>,
    json: bool,
    elapsed: std::time::Duration,
    path: &Path,
) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(report)?;
        if let Some(verified) = provenance {
            value["attestation"] = serde_json::json!({
                "verified": true, "origin": verified.origin, "tenant_id": verified.tenant_id,
                "builder": verified.statement.predicate.run_details.builder.id, "signed_by": verified.signed_by,
            });
        }
        return super::forensic::print_verified_json(&value);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "verified bundle {} ({})", report.bundle_id, path.display())?;
    writeln!(out, "  tenant       {}", report.tenant_id)?;
    writeln!(out, "  case         {}", report.case_id)?;
    writeln!(out, "  kind         {}", report.kind)?;
    writeln!(out, "  files        {} ({} bytes), every SHA-256 matching the manifest", report.files, report.bytes)?;
    writeln!(out, "  merkle root  {}", report.merkle_root)?;
    writeln!(out, "  signed by    {} at {}", report.signed_by.join(", "), report.signed_at)?;
    if let Some(stamp) = &report.timestamp {
        writeln!(out, "  timestamp    {} by {} (RFC 3161, serial {}, verified)", stamp.time, stamp.tsa, stamp.serial)?;
    } else if report.timestamp_unchecked {
        writeln!(out, "  timestamp    present, not checked: pass the TSA's certificate with --tsa-cert")?;
    }
    if report.inclusion_proofs > 0 {
        writeln!(
            out,
            "  proofs       {} log record(s), each in its log's signed checkpoint (RFC 6962 inclusion)",
            report.inclusion_proofs
        )?;
    }
    if let Some(verified) = provenance {
        writeln!(
            out,
            "  provenance   custos's own, tenant {}, built by {}, signed by {} (SLSA v1 of the manifest)",
            verified.tenant_id,
            verified.statement.predicate.run_details.builder.id,
            verified.signed_by.join(", ")
        )?;
    }
    writeln!(out, "{}", super::forensic::took_line(elapsed, report.bytes))?;
    Ok(())
}
