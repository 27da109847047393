//! `custos keys`: the checkpoint signing key. The private key lives only in its file
//! (0600); the store holds the public halves with their validity windows, which
//! `/v1/keys` publishes.

use std::io::Write as _;

use anyhow::{Context, bail};
use custos_model::Timestamp;
use custos_model::ledger::log_origin;
use custos_server::keys::{SigningKey, verifier_key};
use custos_store::{KeyOverlap, SigningKeyRecord};

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
        KeysCommand::Rotate { reason, overlap } => {
            let old = SigningKey::load(&path).with_context(|| {
                format!("reading the current key {}; `custos keys generate` creates the first one", path.display())
            })?;
            let old_id = old.key_id().to_owned();
            let fresh = SigningKey::generate();
            let now = Timestamp::now();
            let overlap = overlap.map(|d| KeyOverlap {
                key_id: old_id.clone(),
                until: now.saturating_add_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            });
            let new = match &overlap {
                // The file keeps the old key beside the new one until the window ends
                // (only one: a key the old one still overlapped is dropped).
                Some(overlap) => fresh.with_previous(old, overlap.until),
                None => fresh,
            };
            // Publish first: a server that picks the new file up must find its key listed.
            store.put_signing_key(&new.record(now)).await?;
            new.replace(&path)?;
            let retired = store.retire_signing_keys_except(new.key_id(), now, overlap.as_ref()).await?;
            let actor = super::admin::cli_actor();
            let tenants = store.tenants().await?;
            let until = overlap.as_ref().map(|o| o.until);
            custos_server::ledger::record_key_rotation(
                &*store,
                &tenants,
                &old_id,
                new.key_id(),
                until,
                &actor,
                &reason,
            )
            .await;
            tracing::info!(
                previous = old_id.as_str(),
                key_id = new.key_id(),
                retired = retired.len(),
                overlap_until = until.map(|t| t.to_string()),
                tenants = tenants.len(),
                "signing key rotated"
            );
            match until {
                Some(until) => eprintln!(
                    "rotated: {} signs from now on, and {} signs beside it until {until}; then `custos keys \
                     drop-previous` removes its private half from {}; recorded in {} tenant(s)' timeline and audit \
                     logs",
                    new.key_id(),
                    &old_id,
                    path.display(),
                    tenants.len()
                ),
                None => eprintln!(
                    "rotated: {} signs from now on; {} retired (public half kept at /v1/keys); recorded in {} \
                     tenant(s)' timeline and audit logs",
                    new.key_id(),
                    &old_id,
                    tenants.len()
                ),
            }
            println!("{}", new.key_id());
        }
        KeysCommand::DropPrevious { reason } => {
            let key = SigningKey::load(&path).with_context(|| format!("reading the current key {}", path.display()))?;
            let Some((previous, until)) = key.previous() else {
                eprintln!("{} holds no previous key: nothing to drop", path.display());
                return Ok(());
            };
            let previous_id = previous.key_id().to_owned();
            let now = Timestamp::now();
            let stripped = key.without_previous();
            stripped.replace(&path)?;
            // Closes the window if it is still open; a closed one keeps its end.
            let retired = store.retire_signing_keys_except(stripped.key_id(), now, None).await?;
            let tenants: Vec<_> = store.tenants().await?.into_iter().map(|t| t.id).collect();
            let action = custos_server::ledger::AdminAction {
                kind: "custos.key.previous_dropped",
                actor: custos_model::ledger::AuditActor { id: None, name: Some(super::admin::cli_actor()) },
                resource_type: "signing_key",
                resource_id: &previous_id,
                details: serde_json::json!({
                    "key_id": stripped.key_id(), "previous_key_id": previous_id, "reason": reason,
                    "overlap_until": until, "closed_early": until > now,
                }),
            };
            custos_server::ledger::record_admin_action(&*store, &tenants, &action).await;
            tracing::info!(
                key_id = stripped.key_id(),
                previous = previous_id.as_str(),
                closed_early = until > now,
                retired = retired.len(),
                "previous signing key dropped"
            );
            if until > now {
                eprintln!(
                    "dropped {previous_id} from {}; its window, due to end at {until}, ended now",
                    path.display()
                );
            } else {
                eprintln!("dropped {previous_id} from {}; its window ended at {until}", path.display());
            }
            println!("{previous_id}");
        }
        KeysCommand::List { format } => {
            let keys = store.signing_keys().await?;
            // The file's keys: the current one, and the previous one during an overlap.
            let in_file: Vec<String> = SigningKey::load(&path)
                .map(|k| {
                    let mut ids = vec![k.key_id().to_owned()];
                    ids.extend(k.previous().map(|(p, _)| p.key_id().to_owned()));
                    ids
                })
                .unwrap_or_default();
            tracing::info!(count = keys.len(), "signing keys listed");
            print_keys(&keys, &in_file.iter().map(String::as_str).collect::<Vec<_>>(), format)?;
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
            let now = Timestamp::now();
            let chosen: Vec<&SigningKeyRecord> = keys.iter().filter(|k| all || signs_at(k, now)).collect();
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

/// Whether a published key signs at `at` (the current key, or one in its overlap window).
fn signs_at(key: &SigningKeyRecord, at: Timestamp) -> bool {
    key.not_after.is_none_or(|until| at < until)
}

/// `active` (the current key), `overlap` (replaced, still signing beside it) or `retired`.
fn state(key: &SigningKeyRecord, at: Timestamp) -> &'static str {
    match key.not_after {
        None => "active",
        Some(until) if at < until => "overlap",
        Some(_) => "retired",
    }
}

fn print_keys(keys: &[SigningKeyRecord], in_file: &[&str], format: OutputFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let now = Timestamp::now();
    match format {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "key_id": k.key_id, "algorithm": k.algorithm,
                        "public_key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, k.public_key),
                        "created_at": k.created_at, "not_before": k.not_before, "not_after": k.not_after,
                        "active": k.not_after.is_none(), "state": state(k, now), "signs_now": signs_at(k, now),
                        "in_key_file": in_file.contains(&k.key_id.as_str()),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        OutputFormat::Table => {
            writeln!(out, "{:<25} {:<8} {:<28} {:<28} FILE", "KEY ID", "STATE", "VALID FROM", "VALID UNTIL")?;
            for k in keys {
                let until = k.not_after.map_or_else(|| "-".to_owned(), |t| t.to_string());
                let file = if in_file.contains(&k.key_id.as_str()) { "yes" } else { "" };
                let state = state(k, now);
                writeln!(out, "{:<25} {:<8} {:<28} {:<28} {file}", k.key_id, state, k.not_before.to_string(), until)?;
            }
        }
    }
    Ok(())
}
