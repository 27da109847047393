//! `custos forensic verify-log`: recompute a tenant log from its records and check it
//! against a signed checkpoint and a pinned key, offline (`--export FILE`) or through
//! a server (which only supplies the bytes: every check runs here).

use std::io::{BufReader, Write as _};
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custos_ledger::export::{Verifier, VerifyReport};
use custos_ledger::merkle::verify_consistency;
use custos_ledger::note::{Checkpoint, NoteVerifier};
use secrecy::ExposeSecret;
use tracing::Instrument;

use crate::cli::{ForensicArgs, ForensicCommand, GlobalArgs, ServerConnection, VerifyLogArgs};

pub async fn run(global: &GlobalArgs, args: &ForensicArgs) -> anyhow::Result<()> {
    match &args.command {
        ForensicCommand::VerifyLog(verify) => verify_log(global, &args.connection, verify).await,
        ForensicCommand::Verify(verify) => super::forensic_bundle::verify(verify).await,
        ForensicCommand::Snapshot(snapshot) => match &snapshot.command {
            crate::cli::SnapshotCommand::Create(create) => {
                super::forensic_evidence::snapshot_create(&args.connection, create).await
            }
        },
        ForensicCommand::Artifact(artifact) => match &artifact.command {
            crate::cli::ArtifactCommand::Upload(upload) => {
                super::forensic_evidence::artifact_upload(&args.connection, upload).await
            }
        },
        ForensicCommand::Attest(attest) => match &attest.command {
            crate::cli::AttestCommand::Show(show) => {
                super::forensic_evidence::attest_show(&args.connection, show).await
            }
        },
    }
}

/// The keys named by `--key` values: each value itself, or for `@FILE` the file's lines
/// (blank lines and `#` comments skipped). An unreadable file is a usage error.
pub(super) fn key_lines(values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for value in values {
        match value.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::Error::new(super::UsageError(format!("reading --key file {path}: {e}"))))?;
                lines.extend(
                    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned),
                );
            }
            None => lines.push(value.clone()),
        }
    }
    Ok(lines)
}

/// Reads `--key` values: verifier keys, or `@FILE` for a file of them (one per line).
fn pinned_keys(values: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    key_lines(values)?
        .into_iter()
        .map(|line| NoteVerifier::parse(&line).map_err(|e| anyhow::anyhow!("--key {line:?}: {e}")))
        .collect()
}

/// Prints a verification report as one JSON object with `"verified": true`.
pub(super) fn print_verified_json(report: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(report)?;
    value["verified"] = serde_json::Value::Bool(true);
    writeln!(std::io::stdout().lock(), "{value}")?;
    Ok(())
}

/// The report's last line: how long verification took, and how fast.
pub(super) fn took_line(elapsed: std::time::Duration, bytes: u64) -> String {
    format!(
        "  took         {:.3}s ({:.0} MB/s)",
        elapsed.as_secs_f64(),
        bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
    )
}

async fn verify_log(global: &GlobalArgs, connection: &ServerConnection, args: &VerifyLogArgs) -> anyhow::Result<()> {
    let mut keys = pinned_keys(&args.keys)?;
    let earlier = args
        .from_checkpoint
        .as_ref()
        .map(|path| std::fs::read(path).with_context(|| format!("reading --from-checkpoint {}", path.display())))
        .transpose()?;
    let fetched;
    let export_path: &Path = match (&args.export, &args.tenant) {
        (Some(path), _) => path,
        (None, Some(tenant)) => {
            let origin = custos_model::ledger::log_origin(
                &global.deployment,
                &custos_model::TenantId::parse(tenant)
                    .map_err(|e| anyhow::anyhow!("--tenant {tenant:?}: {}", e.message))?,
                args.log.name(),
            );
            if args.trust_server_keys {
                keys = server_keys(connection, &origin).await?;
                eprintln!(
                    "warning: trusting the server's published keys; pin them with --key for an independent check"
                );
            }
            fetched = fetch_export(connection, tenant, args).await?;
            fetched.path()
        }
        (None, None) => bail!("name what to verify: --tenant <id> (fetched from --server) or --export FILE"),
    };
    if keys.is_empty() {
        bail!(
            "pin the signing key: --key <verifier key> (from `custos keys export-public --tenant T --log L`, or \
             GET /v1/keys?origin=…), or --trust-server-keys"
        );
    }
    let mut verifier = Verifier::new(keys);
    if let Some(note) = &earlier {
        verifier = verifier.with_earlier(note.clone());
    }
    let file = std::fs::File::open(export_path).with_context(|| format!("opening {}", export_path.display()))?;
    let started = std::time::Instant::now();
    let path = export_path.to_owned();
    let result = tokio::task::spawn_blocking(move || verifier.verify(BufReader::with_capacity(1 << 20, file)))
        .await
        .context("the verifier stopped")?;
    let elapsed = started.elapsed();
    // A retention shorter than promised is a failure like any other.
    let result = result.and_then(|report| match (args.min_retention_days, &report.retention) {
        (Some(promised), Some(retention)) if retention.min_retention_days.is_none_or(|days| days < promised) => {
            Err(custos_ledger::export::VerifyError::BadPrune {
                index: retention.newest_leaf,
                message: format!(
                    "the log's retention records state {} where at least {promised} days were promised \
                     (--min-retention-days)",
                    retention.min_retention_days.map_or("no retention".to_owned(), |d| format!("{d} days"))
                ),
            })
        }
        _ => Ok(report),
    });
    match result {
        Ok(report) => {
            if let (Some(note), Some(tenant), None) = (&earlier, &args.tenant, &args.export) {
                check_server_consistency(connection, tenant, args, note, &report).await?;
            }
            tracing::info!(
                origin = report.origin.as_str(),
                size = report.size,
                records = report.records,
                pruned = report.pruned,
                "log verified"
            );
            print_report(&report, args.json, elapsed, &path)?;
            Ok(())
        }
        Err(error) => {
            tracing::warn!(error = %error, "log verification failed");
            if args.json {
                println!("{}", serde_json::json!({"verified": false, "error": error.to_string()}));
            }
            bail!("the log does not verify: {error}")
        }
    }
}

fn print_report(report: &VerifyReport, json: bool, elapsed: std::time::Duration, path: &Path) -> anyhow::Result<()> {
    if json {
        return print_verified_json(report);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "verified {} ({})", report.origin, path.display())?;
    writeln!(out, "  size         {} leaves", report.size)?;
    writeln!(out, "  root         {}", report.root)?;
    writeln!(out, "  records      {} recomputed and matching", report.records)?;
    match &report.retention {
        Some(retention) => writeln!(
            out,
            "  pruned       {} (removed by retention: their leaf hashes verify, and {} retention record(s) in the \
             log account for them; the newest, leaf {}, removed those below leaf {}; the least retention stated: {})",
            report.pruned,
            retention.records,
            retention.newest_leaf,
            retention.newest_before_index,
            retention.min_retention_days.map_or("none".to_owned(), |d| format!("{d} days"))
        )?,
        None => writeln!(out, "  pruned       {} (removed by retention; their leaf hashes verify)", report.pruned)?,
    }
    writeln!(out, "  signed by    key id {}", report.signed_by.join(", "))?;
    if let Some(size) = report.consistent_with {
        writeln!(out, "  consistent   with the earlier checkpoint of {size} leaves")?;
    }
    writeln!(out, "{}", took_line(elapsed, report.bytes))?;
    Ok(())
}

async fn get(connection: &ServerConnection, path: &str, token: bool) -> anyhow::Result<reqwest::Response> {
    let url = format!("{}{path}", connection.server.trim_end_matches('/'));
    let mut builder = reqwest::Client::new().get(&url);
    if token {
        let token = connection.token.as_ref().context("no token: pass --token or set CUSTOS_TOKEN")?;
        builder = builder.bearer_auth(token.expose_secret());
    }
    let (request, span, trace_id) = super::traced_with_id(builder, "GET", &url);
    eprintln!("trace_id: {trace_id}");
    let response = request.send().instrument(span.clone()).await.with_context(|| format!("reaching {url}"))?;
    span.record("http.response.status_code", response.status().as_u16());
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{status} from {url}: {message}");
    }
    Ok(response)
}

async fn server_keys(connection: &ServerConnection, origin: &str) -> anyhow::Result<Vec<NoteVerifier>> {
    let query = form_urlencoded_pair("origin", origin);
    let keys: serde_json::Value = get(connection, &format!("/v1/keys?{query}"), false).await?.json().await?;
    keys["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["verifier_key"].as_str())
        .map(|v| NoteVerifier::parse(v).map_err(|e| anyhow::anyhow!("the server's key {v:?}: {e}")))
        .collect()
}

fn form_urlencoded_pair(name: &str, value: &str) -> String {
    let encoded: String = value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{name}={encoded}")
}

/// An export fetched from the server: a temporary file, or the `--save` file.
enum Downloaded {
    Temporary(tempfile::TempPath),
    Kept(std::path::PathBuf),
}

impl Downloaded {
    fn path(&self) -> &Path {
        match self {
            Downloaded::Temporary(path) => path,
            Downloaded::Kept(path) => path,
        }
    }
}

/// Downloads the log's export into `--save` or a temporary file, with progress.
async fn fetch_export(connection: &ServerConnection, tenant: &str, args: &VerifyLogArgs) -> anyhow::Result<Downloaded> {
    let path = format!("/v1/tenants/{tenant}/{}/export", args.log.name());
    let mut response = get(connection, &path, true).await?;
    let (mut file, downloaded) = match &args.save {
        Some(save) => (
            std::fs::File::create(save).with_context(|| format!("creating {}", save.display()))?,
            Downloaded::Kept(save.clone()),
        ),
        None => {
            let (file, path) = tempfile::NamedTempFile::new().context("creating a temporary file")?.into_parts();
            (file, Downloaded::Temporary(path))
        }
    };
    let progress = indicatif::ProgressBar::new_spinner().with_message("downloading the export");
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}: {bytes} ({bytes_per_sec})")
            .expect("a valid template"),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while let Some(chunk) = response.chunk().await.context("downloading the export")? {
        file.write_all(&chunk)?;
        progress.inc(chunk.len() as u64);
    }
    file.sync_all()?;
    progress.finish_and_clear();
    Ok(downloaded)
}

/// With an earlier checkpoint, also asks the server for its consistency proof and
/// checks it: the server must be able to prove what the recomputation found.
async fn check_server_consistency(
    connection: &ServerConnection,
    tenant: &str,
    args: &VerifyLogArgs,
    earlier_note: &[u8],
    report: &VerifyReport,
) -> anyhow::Result<()> {
    let earlier = Checkpoint::parse(
        std::str::from_utf8(earlier_note)
            .ok()
            .and_then(|note| note.split_once("\n\n").map(|(text, _)| text))
            .map(|text| format!("{text}\n"))
            .as_deref()
            .unwrap_or_default(),
    )
    .map_err(|e| anyhow::anyhow!("--from-checkpoint: {e}"))?;
    if earlier.size == 0 || earlier.size == report.size {
        return Ok(());
    }
    let path =
        format!("/v1/tenants/{tenant}/{}/proof/consistency?from={}&to={}", args.log.name(), earlier.size, report.size);
    let proof: serde_json::Value = get(connection, &path, true).await?.json().await?;
    let hashes = proof["proof"]
        .as_array()
        .context("the server's consistency proof has no `proof`")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| STANDARD.decode(h).ok())
                .and_then(|h| h.try_into().ok())
                .context("the server's consistency proof holds a malformed hash")
        })
        .collect::<anyhow::Result<Vec<[u8; 32]>>>()?;
    let root: [u8; 32] = STANDARD.decode(&report.root)?.try_into().map_err(|_| anyhow::anyhow!("a bad root"))?;
    verify_consistency(earlier.size, report.size, &earlier.root, &root, &hashes).map_err(|e| {
        anyhow::anyhow!("the server's consistency proof from {} to {} fails: {e}", earlier.size, report.size)
    })
}
