//! Administration against the configured store: migrations, tenants and tokens. These
//! commands open the same database the server uses and are safe while it runs.

use std::io::Write;

use anyhow::{Context, bail};
use custos_model::{Scope, TenantId, TenantSelector, Timestamp, token};
use custos_store::{Tenant, TokenRecord};

use crate::cli::{GlobalArgs, OutputFormat, TenantsCommand, TokensCommand};
use crate::settings;

pub async fn migrate(global: &GlobalArgs) -> anyhow::Result<()> {
    let (applied, backend) = settings::migrate_as_owner(global).await?;
    tracing::info!(applied, backend = backend.as_str(), "migrations up to date");
    println!("applied {applied} migration(s); {} schema up to date", backend.as_str());
    Ok(())
}

pub async fn tenants(global: &GlobalArgs, command: TenantsCommand) -> anyhow::Result<()> {
    let store = settings::open_store(global).await?;
    match command {
        TenantsCommand::Create { id, name, retention_days } => {
            let id = TenantId::parse(&id).map_err(|e| anyhow::anyhow!("tenant id {id:?} {}", e.message))?;
            if retention_days == 0 {
                bail!("--retention-days must be at least 1");
            }
            let tenant = Tenant { id, name, retention_days: i64::from(retention_days), created_at: Timestamp::now() };
            store.create_tenant(&tenant).await?;
            tracing::info!(tenant_id = tenant.id.as_str(), "tenant created");
            println!("{}", tenant.id);
        }
        TenantsCommand::List { format } => {
            let tenants = store.tenants().await?;
            tracing::info!(count = tenants.len(), "tenants listed");
            let mut out = std::io::stdout().lock();
            match format {
                OutputFormat::Json => {
                    serde_json::to_writer_pretty(&mut out, &tenants)?;
                    writeln!(out)?;
                }
                OutputFormat::Table => {
                    writeln!(out, "{:<24} {:>9}  {:<28} NAME", "ID", "RETENTION", "CREATED")?;
                    for t in tenants {
                        writeln!(
                            out,
                            "{:<24} {:>8}d  {:<28} {}",
                            t.id,
                            t.retention_days,
                            t.created_at,
                            t.name.unwrap_or_default()
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The scopes a `tokens create` asks for: each bare permission is bound to `--tenant`.
pub fn requested_scopes(tenant: Option<&str>, scopes: &[String]) -> anyhow::Result<Vec<Scope>> {
    let selector = tenant
        .map(|t| TenantSelector::parse(t).map_err(|e| anyhow::anyhow!("--tenant {t:?}: {}", e.message)))
        .transpose()?;
    let mut parsed: Vec<Scope> = Vec::new();
    for raw in scopes {
        let scope = Scope::parse(raw, selector.as_ref()).map_err(|e| {
            if selector.is_none() && !raw.contains('#') {
                anyhow::anyhow!(
                    "--scope {raw:?} names no tenant: add --tenant <id> (or '*'), or write {raw}#tenant/<id>"
                )
            } else {
                anyhow::anyhow!("--scope {raw:?}: {}", e.message)
            }
        })?;
        if !parsed.contains(&scope) {
            parsed.push(scope);
        }
    }
    Ok(parsed)
}

pub async fn tokens(global: &GlobalArgs, command: TokensCommand) -> anyhow::Result<()> {
    let store = settings::open_store(global).await?;
    match command {
        TokensCommand::Create { tenant, scopes, name, expires_in } => {
            let scopes = requested_scopes(tenant.as_deref(), &scopes)?;
            for scope in &scopes {
                if let TenantSelector::One(id) = &scope.tenant
                    && store.tenant(id).await?.is_none()
                {
                    bail!("tenant {id} does not exist; create it with: custos tenants create {id}");
                }
            }
            let now = Timestamp::now();
            let expires_at = match expires_in {
                crate::cli::TokenLifetime::Never => {
                    eprintln!(
                        "warning: this token never expires (--expires-in never): it works until revoked, so keep it \
                         like a password and rotate it by hand"
                    );
                    None
                }
                crate::cli::TokenLifetime::For(lifetime) => {
                    let micros = i64::try_from(lifetime.as_micros()).context("--expires-in is too long")?;
                    Some(now.saturating_add_micros(micros))
                }
            };
            let generated = token::generate();
            let record = TokenRecord {
                id: generated.id.clone(),
                name,
                secret_hash: generated.secret_hash,
                scopes,
                created_at: now,
                expires_at,
                revoked_at: None,
            };
            store.create_token(&record).await?;
            let scope_list: Vec<String> = record.scopes.iter().map(Scope::to_string).collect();
            record_token_action(&*store, &record, "custos.token.created", created_details(&record)).await?;
            tracing::info!(token_id = record.id.as_str(), scopes = scope_list.join(" ").as_str(), "token created");
            eprintln!(
                "created token {} ({}) with scopes {}{}; it is shown once, below",
                record.id,
                record.name,
                scope_list.join(" "),
                expires_at.map(|t| format!(", expiring {t}")).unwrap_or_default()
            );
            println!("{}", generated.secret);
        }
        TokensCommand::List { format } => {
            let tokens = store.tokens().await?;
            tracing::info!(count = tokens.len(), "tokens listed");
            let now = Timestamp::now();
            let mut out = std::io::stdout().lock();
            match format {
                OutputFormat::Json => {
                    let rows: Vec<serde_json::Value> = tokens
                        .iter()
                        .map(|t| {
                            serde_json::json!({
                                "id": t.id, "name": t.name,
                                "scopes": t.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(),
                                "created_at": t.created_at, "expires_at": t.expires_at, "revoked_at": t.revoked_at,
                                "active": t.is_active(now),
                            })
                        })
                        .collect();
                    serde_json::to_writer_pretty(&mut out, &rows)?;
                    writeln!(out)?;
                }
                OutputFormat::Table => {
                    writeln!(out, "{:<21} {:<8} {:<16} SCOPES", "ID", "STATE", "NAME")?;
                    for t in tokens {
                        let state = if t.revoked_at.is_some() {
                            "revoked"
                        } else if t.is_active(now) {
                            "active"
                        } else {
                            "expired"
                        };
                        let scopes: Vec<String> = t.scopes.iter().map(Scope::to_string).collect();
                        writeln!(out, "{:<21} {:<8} {:<16} {}", t.id, state, t.name, scopes.join(" "))?;
                    }
                }
            }
        }
        TokensCommand::Revoke { id } => {
            let record = store.revoke_token(&id, Timestamp::now()).await?;
            let details = serde_json::json!({"name": record.name, "revoked_at": record.revoked_at});
            record_token_action(&*store, &record, "custos.token.revoked", details).await?;
            tracing::info!(token_id = record.id.as_str(), "token revoked");
            println!("revoked {} ({}) at {}", record.id, record.name, record.revoked_at.unwrap_or_else(Timestamp::now));
        }
    }
    Ok(())
}

/// The CLI's user as an audit actor (`cli:alice`).
pub fn cli_actor() -> String {
    std::env::var("USER").map_or_else(|_| "cli".to_owned(), |user| format!("cli:{user}"))
}

/// What a `custos.token.created` record says of the token: its name, scopes and expiry.
pub(crate) fn created_details(token: &TokenRecord) -> serde_json::Value {
    let scopes: Vec<String> = token.scopes.iter().map(Scope::to_string).collect();
    serde_json::json!({"name": token.name, "scopes": scopes, "expires_at": token.expires_at})
}

/// Records a token's creation or revocation in the timeline and audit log of every
/// tenant its scopes name (every tenant for a `#tenant/*` scope).
pub(crate) async fn record_token_action(
    store: &dyn custos_store::Store,
    token: &TokenRecord,
    kind: &str,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    let tenants: Vec<TenantId> = if token.scopes.iter().any(|s| s.tenant == TenantSelector::All) {
        store.tenants().await?.into_iter().map(|t| t.id).collect()
    } else {
        let mut named: Vec<TenantId> = token
            .scopes
            .iter()
            .filter_map(|s| match &s.tenant {
                TenantSelector::One(id) => Some(id.clone()),
                TenantSelector::All => None,
            })
            .collect();
        named.sort();
        named.dedup();
        named
    };
    let action = custos_server::ledger::AdminAction {
        kind,
        actor: custos_model::ledger::AuditActor { id: None, name: Some(cli_actor()) },
        resource_type: "token",
        resource_id: &token.id,
        details,
    };
    custos_server::ledger::record_admin_action(store, &tenants, &action).await;
    Ok(())
}
