//! The tenant logs in the server: appending (the platform's records and custos's own),
//! signing checkpoints with the deployment's key (periodically, and on demand), and
//! assembling proofs from stored hashes.
//!
//! **Checkpoints.** A checkpoint is signed for a log's current head (size and root, as
//! the store keeps them) and kept. The checkpointer signs every log that grew since its
//! latest checkpoint, each period; a reader who needs a proof for a record newer than
//! the latest checkpoint gets one signed on the spot. Ed25519 signatures are
//! deterministic, so replicas that sign the same head with the same key keep one
//! checkpoint, not two.
//!
//! **The key** is read from its file (see [`crate::keys`]) and read again whenever the
//! file changes, so `custos keys rotate` takes effect on running servers at their next
//! signature without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use custos_ledger::merkle::{self, Hash};
use custos_ledger::note::Checkpoint;
use custos_model::ledger::{AuditRecord, LogName, TimelineEvent, log_origin};
use custos_model::{FieldError, TenantId, Timestamp};
use custos_store::{AppendOutcome, LogAppend, Store, StoredCheckpoint};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::keys::{KeyFileError, SigningKey};

/// Name of the checkpointer in the workers registry, logs and `/health`.
pub const CHECKPOINTER: &str = "checkpointer";

/// The deployment's name in log origins, and its signing key.
#[derive(Debug)]
pub struct Ledger {
    deployment: String,
    key_file: Option<PathBuf>,
    key: RwLock<Option<LoadedKey>>,
}

#[derive(Debug, Clone)]
struct LoadedKey {
    key: Arc<SigningKey>,
    /// The file's modification time and length when read: a change means a rotation.
    stamp: (Option<SystemTime>, u64),
}

fn file_stamp(path: &Path) -> std::io::Result<(Option<SystemTime>, u64)> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified().ok(), metadata.len()))
}

impl Ledger {
    /// `deployment` names this deployment in every log's origin; `key_file`, when set,
    /// holds the signing key (without one, checkpoints are unavailable).
    pub fn new(deployment: impl Into<String>, key_file: Option<PathBuf>) -> Self {
        Self { deployment: deployment.into(), key_file, key: RwLock::default() }
    }

    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// The origin of a tenant's log: `<deployment>/tenants/<tenant>/<log>`.
    pub fn origin(&self, tenant: &TenantId, log: LogName) -> String {
        log_origin(&self.deployment, tenant, log)
    }

    /// The signing key, read again if its file changed since it was last read.
    pub fn key(&self) -> Result<Arc<SigningKey>, ApiError> {
        let path = self.key_file.as_deref().ok_or_else(|| {
            ApiError::new(ErrorCode::Unavailable, "this server has no checkpoint signing key configured")
        })?;
        let unavailable = |error: &dyn std::fmt::Display| {
            tracing::error!(error = %error, "the checkpoint signing key cannot be read");
            ApiError::new(ErrorCode::Unavailable, "the checkpoint signing key cannot be read; see the server log")
        };
        let stamp = file_stamp(path).map_err(|e| unavailable(&KeyFileError::Io { path: path.into(), source: e }))?;
        if let Some(loaded) = self.key.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            && loaded.stamp == stamp
        {
            return Ok(loaded.key.clone());
        }
        let key = Arc::new(SigningKey::load(path).map_err(|e| unavailable(&e))?);
        let mut slot = self.key.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(previous) = slot.as_ref()
            && previous.key.key_id() != key.key_id()
        {
            tracing::info!(previous = previous.key.key_id(), key_id = key.key_id(), "signing key changed");
        }
        *slot = Some(LoadedKey { key: key.clone(), stamp });
        Ok(key)
    }
}

/// Appends to a tenant's log, mapping the store's refusals to API errors.
pub(crate) async fn append(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
    records: Vec<LogAppend>,
    received_at: Timestamp,
) -> Result<AppendOutcome, ApiError> {
    let outcome = state.store.append_log(tenant, log, records, received_at).await?;
    state.metrics.count_records(log.as_str(), "inserted", outcome.inserted as u64);
    state.metrics.count_records(log.as_str(), "duplicate", outcome.duplicates as u64);
    Ok(outcome)
}

/// What custos writes into a tenant's logs about what it did itself.
#[derive(Debug, Clone)]
pub(crate) enum OwnRecord {
    Timeline(TimelineEvent),
    Audit(AuditRecord),
}

/// Appends custos's own records. They are evidence, not the request's purpose: a
/// failure is logged and counted, and the caller carries on.
pub(crate) async fn record_own(store: &dyn Store, tenant: &TenantId, records: Vec<OwnRecord>) {
    let now = Timestamp::now();
    let (mut timeline, mut audit) = (Vec::new(), Vec::new());
    for record in records {
        match record {
            OwnRecord::Timeline(event) => match event.checked() {
                Ok(event) => timeline.push(LogAppend::timeline(&event)),
                Err(error) => tracing::error!(error = %error, "custos built an invalid timeline event"),
            },
            OwnRecord::Audit(record) => match record.checked() {
                Ok(record) => audit.push(LogAppend::audit(&record)),
                Err(error) => tracing::error!(error = %error, "custos built an invalid audit record"),
            },
        }
    }
    for (log, batch) in [(LogName::Timeline, timeline), (LogName::Audit, audit)] {
        if batch.is_empty() {
            continue;
        }
        if let Err(error) = store.append_log(tenant, log, batch, now).await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                tenant_id = tenant.as_str(),
                log = log.as_str(),
                "recording custos's own records failed"
            );
        }
    }
}

/// Records a signing key rotation in every tenant's timeline and audit log: each
/// tenant's checkpoints change signer, so each log says when and why.
pub async fn record_key_rotation(
    store: &dyn Store,
    tenants: &[custos_store::Tenant],
    previous: &str,
    key_id: &str,
    actor: &str,
    reason: &str,
) {
    let details = serde_json::json!({"previous_key_id": previous, "key_id": key_id, "reason": reason});
    for tenant in tenants {
        let now = Timestamp::now();
        let event = TimelineEvent {
            event_id: own_event_id("key-rotated"),
            ts: now,
            tenant_id: tenant.id.clone(),
            project_id: None,
            kind: "custos.key.rotated".into(),
            actor: Some(actor.to_owned()),
            resource_type: Some("signing_key".into()),
            resource_id: Some(key_id.to_owned()),
            trace_id: None,
            details: details.clone(),
        };
        let audit = AuditRecord {
            event_id: own_event_id("key-rotated"),
            ts: now,
            tenant_id: tenant.id.clone(),
            actor: custos_model::ledger::AuditActor { id: None, name: Some(actor.to_owned()) },
            actor_ip: None,
            action: "custos.key.rotated".into(),
            outcome: custos_model::ledger::AuditOutcome::Success,
            resource_type: Some("signing_key".into()),
            resource_id: Some(key_id.to_owned()),
            request_id: None,
            trace_id: None,
            details: details.clone(),
        };
        record_own(store, &tenant.id, vec![OwnRecord::Timeline(event), OwnRecord::Audit(audit)]).await;
    }
}

/// A new unique id for a record custos writes itself.
pub(crate) fn own_event_id(what: &str) -> String {
    format!("custos-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// Signs and keeps a checkpoint of the log's current head, unless the latest kept
/// checkpoint already covers it with the current key; returns the latest checkpoint.
pub(crate) async fn checkpoint(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
) -> Result<StoredCheckpoint, ApiError> {
    let key = state.ledger.key()?;
    let head = state.store.log_head(tenant, log).await?;
    let latest = state.store.latest_checkpoint(tenant, log).await?;
    if let Some(latest) = &latest
        && latest.size == head.size
        && latest.key_id == key.key_id()
    {
        return Ok(latest.clone());
    }
    if let Some(latest) = &latest
        && latest.size > head.size
    {
        // Never sign a log shorter than one already signed: that is a truncation.
        tracing::error!(
            tenant_id = tenant.as_str(),
            log = log.as_str(),
            head = head.size,
            checkpoint = latest.size,
            "the log is shorter than its latest checkpoint: records were removed below the application"
        );
        return Err(ApiError::new(
            ErrorCode::Internal,
            format!(
                "the {log} log holds {} leaves but a checkpoint of {} was signed: it was truncated below the \
                 application; run `custos forensic verify-log` with a saved checkpoint",
                head.size, latest.size
            ),
        ));
    }
    let origin = state.ledger.origin(tenant, log);
    let signer = key.signer(&origin).map_err(|e| ApiError::internal(&e))?;
    let note = Checkpoint { origin, size: head.size, root: head.root, extensions: Vec::new() }
        .sign(&signer)
        .map_err(|e| ApiError::internal(&e))?;
    let checkpoint = StoredCheckpoint {
        size: head.size,
        key_id: key.key_id().to_owned(),
        root: head.root,
        note,
        created_at: Timestamp::now(),
    };
    state.store.put_checkpoint(tenant, log, &checkpoint).await?;
    tracing::info!(
        tenant_id = tenant.as_str(),
        log = log.as_str(),
        size = head.size,
        key_id = key.key_id(),
        "checkpoint signed"
    );
    Ok(checkpoint)
}

/// The latest checkpoint that covers leaf `index`, signing one for the current head
/// when none does yet.
pub(crate) async fn checkpoint_covering(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
    index: u64,
) -> Result<StoredCheckpoint, ApiError> {
    match state.store.latest_checkpoint(tenant, log).await? {
        Some(latest) if latest.size > index => Ok(latest),
        _ => checkpoint(state, tenant, log).await,
    }
}

/// The audit path of leaf `index` in the tree of `size` leaves, from stored hashes.
pub(crate) async fn inclusion_proof(
    store: &dyn Store,
    tenant: &TenantId,
    log: LogName,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ApiError> {
    let plan =
        merkle::inclusion_plan(index, size).map_err(|e| ApiError::invalid(FieldError::new("index", e.to_string())))?;
    assemble(store, tenant, log, &plan).await
}

/// The consistency proof between the trees of `old` and `new` leaves, from stored
/// hashes.
pub(crate) async fn consistency_proof(
    store: &dyn Store,
    tenant: &TenantId,
    log: LogName,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ApiError> {
    let plan =
        merkle::consistency_plan(old, new).map_err(|e| ApiError::invalid(FieldError::new("from", e.to_string())))?;
    assemble(store, tenant, log, &plan).await
}

async fn assemble(
    store: &dyn Store,
    tenant: &TenantId,
    log: LogName,
    plan: &merkle::ProofPlan,
) -> Result<Vec<Hash>, ApiError> {
    let found = store.log_nodes(tenant, log, &plan.nodes()).await?;
    let found: std::collections::HashMap<_, _> = found.into_iter().collect();
    plan.assemble(|node| found.get(&node).copied()).map_err(|e| {
        tracing::error!(error = %e, tenant_id = tenant.as_str(), log = log.as_str(), "a stored hash a proof needs is missing");
        ApiError::new(ErrorCode::Internal, "the log's stored hashes are incomplete; run `custos forensic verify-log`")
    })
}

/// Signs a checkpoint for every log that grew since its latest one, every `period`.
pub fn spawn_checkpointer(state: AppState, period: Duration) -> tokio::task::JoinHandle<()> {
    state.workers.clone().spawn_periodic(CHECKPOINTER, period, move || {
        let state = state.clone();
        async move { checkpoint_all(&state).await }
    })
}

/// One pass of the checkpointer; returns how many checkpoints it signed.
pub async fn checkpoint_all(state: &AppState) -> usize {
    let tenants = match state.store.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, "listing tenants for checkpoints failed");
            return 0;
        }
    };
    let mut signed = 0;
    for tenant in tenants {
        for log in LogName::ALL {
            let due = async {
                let head = state.store.log_head(&tenant.id, log).await?;
                let latest = state.store.latest_checkpoint(&tenant.id, log).await?;
                Ok::<_, custos_store::StoreError>(match latest {
                    Some(latest) => latest.size < head.size,
                    None => head.size > 0,
                })
            };
            match due.await {
                Ok(false) => {}
                Ok(true) => match checkpoint(state, &tenant.id, log).await {
                    Ok(_) => signed += 1,
                    Err(error) => {
                        tracing::warn!(error = %error, tenant_id = tenant.id.as_str(), log = log.as_str(), "signing a checkpoint failed");
                    }
                },
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        tenant_id = tenant.id.as_str(),
                        log = log.as_str(),
                        "reading a log head failed"
                    );
                }
            }
        }
    }
    signed
}
