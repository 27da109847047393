//! `custos keys`: the checkpoint signing key. The private key lives only in its file
//! (0600); the store holds the public halves with their validity windows, which
//! `/v1/keys` publishes.

use std::io::Write as _;

use anyhow::{Context, bail};
use custos_model::Timestamp;
use custos_model::ledger::log_origin;
use custos_server::keys::{SigningKey, verifier_key};
use custos_store::SigningKeyRecord;

use crate::cli::{GlobalArgs, KeysCommand, OutputFormat};
use crate::settings;

pub async fn run(global: &GlobalArgs, command: KeysCommand) -> anyhow::Result<()> {
    let store = settings::open_store(global).await?;
    let path = global.signing_key_path();
    match command {
        KeysCommand::Generate => {
            let key = SigningKey::generate();
            key.create(&path)?;
            store.put_signing_key(&key.record(key.created_at())).await?;
            let tenants: Vec<_> = store.tenants().await?.into_iter().map(|t| t.id).collect();
            let action = custos_server::ledger::AdminAction {
                kind: "custos.key.generated",
                actor: custos_model::ledger::AuditActor { id: None, name: Some(super::admin::cli_actor()) },
                resource_type: "signing_key",
                resource_id: key.key_id(),
                details: serde_json::json!({"key_id": key.key_id()}),
            };
            custos_server::ledger::record_admin_action(&*store, &tenants, &action).await;
            tracing::info!(key_id = key.key_id(), path = %path.display(), "signing key generated");
            eprintln!("created {} (mode 0600); its public half is published at /v1/keys", path.display());
            println!("{}", key.key_id());
        }
        KeysCommand::Rotate { reason } => {
            let old = SigningKey::load(&path).with_context(|| {
                format!("reading the current key {}; `custos keys generate` creates the first one", path.display())
            })?;
            let new = SigningKey::generate();
            let now = Timestamp::now();
            // Publish first: a server that picks the new file up must find its key listed.
            store.put_signing_key(&new.record(now)).await?;
            new.replace(&path)?;
            let retired = store.retire_signing_keys_except(new.key_id(), now).await?;
            let actor = super::admin::cli_actor();
            let tenants = store.tenants().await?;
            custos_server::ledger::record_key_rotation(&*store, &tenants, old.key_id(), new.key_id(), &actor, &reason)
                .await;
            tracing::info!(
                previous = old.key_id(),
                key_id = new.key_id(),
                retired = retired.len(),
                tenants = tenants.len(),
                "signing key rotated"
            );
            eprintln!(
                "rotated: {} signs from now on; {} retired (public half kept at /v1/keys); recorded in {} tenant(s)' \
                 timeline and audit logs",
                new.key_id(),
                old.key_id(),
                tenants.len()
            );
            println!("{}", new.key_id());
        }
        KeysCommand::List { format } => {
            let keys = store.signing_keys().await?;
            let in_file = SigningKey::load(&path).ok().map(|k| k.key_id().to_owned());
            tracing::info!(count = keys.len(), "signing keys listed");
            print_keys(&keys, in_file.as_deref(), format)?;
        }
        KeysCommand::ExportPublic { tenant, log, origin, all } => {
            let origin = match (origin, tenant) {
                (Some(origin), _) => origin,
                (None, Some(tenant)) => {
                    let tenant = custos_model::TenantId::parse(&tenant)
                        .map_err(|e| anyhow::anyhow!("--tenant {tenant:?}: {}", e.message))?;
                    log_origin(&global.deployment, &tenant, log.name())
                }
                (None, None) => bail!("name the log: --tenant <id> [--log timeline|audit], or --origin"),
            };
            let keys = store.signing_keys().await?;
            let chosen: Vec<&SigningKeyRecord> = keys.iter().filter(|k| all || k.not_after.is_none()).collect();
            if chosen.is_empty() {
                bail!("no signing key is published; `custos keys generate` (or `custos serve`) creates one");
            }
            for key in chosen {
                println!("{}", verifier_key(&origin, &key.public_key).with_context(|| format!("origin {origin:?}"))?);
            }
        }
    }
    Ok(())
}

fn print_keys(keys: &[SigningKeyRecord], in_file: Option<&str>, format: OutputFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "key_id": k.key_id, "algorithm": k.algorithm,
                        "public_key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, k.public_key),
                        "created_at": k.created_at, "not_before": k.not_before, "not_after": k.not_after,
                        "active": k.not_after.is_none(), "in_key_file": in_file == Some(k.key_id.as_str()),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        OutputFormat::Table => {
            writeln!(out, "{:<25} {:<8} {:<28} {:<28} FILE", "KEY ID", "STATE", "VALID FROM", "VALID UNTIL")?;
            for k in keys {
                let state = if k.not_after.is_none() { "active" } else { "retired" };
                let until = k.not_after.map_or_else(|| "-".to_owned(), |t| t.to_string());
                let file = if in_file == Some(k.key_id.as_str()) { "yes" } else { "" };
                writeln!(out, "{:<25} {:<8} {:<28} {:<28} {file}", k.key_id, state, k.not_before.to_string(), until)?;
            }
        }
    }
    Ok(())
}
