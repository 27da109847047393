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
use tracing::Instrument as _;

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
        match key.previous() {
            Some((previous, until)) if until <= Timestamp::now() => tracing::warn!(
                previous = previous.key_id(),
                until = %until,
                "the key file still holds the previous signing key, whose overlap has ended: \
                 `custos keys drop-previous` removes its private half"
            ),
            Some((previous, until)) => {
                tracing::info!(previous = previous.key_id(), until = %until, "the previous key signs beside this one");
            }
            None => {}
        }
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
pub enum OwnRecord {
    Timeline(TimelineEvent),
    Audit(AuditRecord),
}

/// Appends custos's own records. They are evidence, not the request's purpose: a
/// failure is logged and counted, and the caller carries on.
pub async fn record_own(store: &dyn Store, tenant: &TenantId, records: Vec<OwnRecord>) {
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

/// An administrative action custos performed, for the timeline and the audit log of
/// each tenant it concerns (a token's tenants; every tenant for a key rotation).
#[derive(Debug, Clone)]
pub struct AdminAction<'a> {
    /// The action's kind, in the `custos.` namespace (`custos.token.created`).
    pub kind: &'a str,
    /// Who did it: the CLI user (`cli:alice`) or a token's id and name.
    pub actor: custos_model::ledger::AuditActor,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub details: serde_json::Value,
}

/// Records `action` as a timeline event and an audit record in each of `tenants`.
pub async fn record_admin_action(store: &dyn Store, tenants: &[TenantId], action: &AdminAction<'_>) {
    for tenant in tenants {
        let (event, audit) = admin_action_records(tenant, action, Timestamp::now());
        record_own(store, tenant, vec![OwnRecord::Timeline(event), OwnRecord::Audit(audit)]).await;
    }
}

/// The records of `action` in `tenant`'s logs, for a store operation that appends them
/// in the change's own transaction (the change and its record commit together).
pub fn action_records(tenant: &TenantId, action: &AdminAction<'_>) -> Result<custos_store::ActionRecords, ApiError> {
    let (event, audit) = admin_action_records(tenant, action, Timestamp::now());
    let built = |e: custos_model::FieldError| ApiError::internal(&e);
    Ok(custos_store::ActionRecords {
        audit: LogAppend::audit(&audit.checked().map_err(built)?),
        timeline: LogAppend::timeline(&event.checked().map_err(built)?),
    })
}

fn admin_action_records(tenant: &TenantId, action: &AdminAction<'_>, now: Timestamp) -> (TimelineEvent, AuditRecord) {
    let slug = action.kind.trim_start_matches("custos.").replace(['.', '_'], "-");
    let actor_text = action.actor.name.clone().or_else(|| action.actor.id.clone());
    let event = TimelineEvent {
        event_id: own_event_id(&slug),
        ts: now,
        tenant_id: tenant.clone(),
        project_id: None,
        kind: action.kind.to_owned(),
        actor: actor_text,
        resource_type: Some(action.resource_type.to_owned()),
        resource_id: Some(action.resource_id.to_owned()),
        trace_id: None,
        details: action.details.clone(),
    };
    let audit = AuditRecord {
        event_id: own_event_id(&slug),
        ts: now,
        tenant_id: tenant.clone(),
        actor: action.actor.clone(),
        actor_ip: None,
        action: action.kind.to_owned(),
        outcome: custos_model::ledger::AuditOutcome::Success,
        resource_type: Some(action.resource_type.to_owned()),
        resource_id: Some(action.resource_id.to_owned()),
        request_id: None,
        trace_id: None,
        details: action.details.clone(),
    };
    (event, audit)
}

/// Records a signing key rotation in every tenant's timeline and audit log: each
/// tenant's checkpoints change signer, so each log says when and why.
pub async fn record_key_rotation(
    store: &dyn Store,
    tenants: &[custos_store::Tenant],
    previous: &str,
    key_id: &str,
    overlap_until: Option<Timestamp>,
    actor: &str,
    reason: &str,
) {
    let ids: Vec<TenantId> = tenants.iter().map(|t| t.id.clone()).collect();
    let mut details = serde_json::json!({"previous_key_id": previous, "key_id": key_id, "reason": reason});
    if let Some(until) = overlap_until {
        details["previous_signs_until"] = serde_json::json!(until);
    }
    let action = AdminAction {
        kind: "custos.key.rotated",
        actor: custos_model::ledger::AuditActor { id: None, name: Some(actor.to_owned()) },
        resource_type: "signing_key",
        resource_id: key_id,
        details,
    };
    record_admin_action(store, &ids, &action).await;
}

/// Counts per key per minute, for budgets: how many of something happened this minute.
#[derive(Debug)]
pub(crate) struct MinuteCounts<K>(std::sync::Mutex<std::collections::HashMap<K, (i64, u32)>>);

impl<K> Default for MinuteCounts<K> {
    fn default() -> Self {
        Self(std::sync::Mutex::default())
    }
}

impl<K: std::hash::Hash + Eq + Clone> MinuteCounts<K> {
    /// Counts one more for `key` this minute; returns the count so far. Keeps at most
    /// 10,000 keys (older minutes go first), so a flood of keys cannot grow it.
    fn count(&self, key: &K) -> u32 {
        let minute = Timestamp::now().as_micros() / 60_000_000;
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= 10_000 && !counts.contains_key(key) {
            counts.retain(|_, (at, _)| *at == minute);
            if counts.len() >= 10_000 {
                counts.clear();
            }
        }
        let slot = counts.entry(key.clone()).or_insert((minute, 0));
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
        slot.1
    }
}

/// Most denials (a valid token lacking the scope, 403) of the tenant's own tokens audited
/// per tenant per minute.
pub const MAX_AUDITED_DENIALS_PER_MINUTE: u32 = 60;
/// Most denials of other tenants' tokens audited per tenant per minute: a budget of its
/// own, so another tenant cannot use up the one that records the tenant's own tokens.
pub const MAX_AUDITED_FOREIGN_DENIALS_PER_MINUTE: u32 = 10;
/// Most refusals without a valid token (401) logged per source address per minute; the
/// rest are only counted (`custos_auth_failures_total`).
pub const MAX_LOGGED_REFUSALS_PER_SOURCE_PER_MINUTE: u32 = 10;

/// The budgets of refused requests: denials audited per tenant, unauthenticated
/// refusals logged per source.
#[derive(Debug, Default)]
pub(crate) struct RefusalBudget {
    /// Per tenant, and whether the token is the tenant's own.
    denials: MinuteCounts<(TenantId, bool)>,
    sources: MinuteCounts<String>,
}

/// A refused request to a tenant's route.
#[derive(Debug)]
pub(crate) struct Refusal<'a> {
    pub status: u16,
    pub path: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    /// The token's id and name (a 403); none for a 401.
    pub actor: Option<(String, String)>,
    /// Whether the token's scopes name the path's tenant (or every tenant): a 403 by a
    /// token of another tenant is that other tenant's business, not the victim's.
    pub actor_of_tenant: bool,
    pub client_address: Option<String>,
    pub request_id: &'a str,
    pub trace_id: String,
    pub message: String,
}

/// Records a refused request to a tenant's route.
///
/// - Without a valid token (401), the named tenant's append-only log is not touched:
///   anyone can send such requests, and they would fill a victim's log. They go to the
///   server's own log, the first few a minute from each source address, and are all
///   counted in `custos_auth_failures_total`.
/// - A valid token lacking the scope (403) is audited in the tenant's log as
///   `custos.auth.denied`, up to [`MAX_AUDITED_DENIALS_PER_MINUTE`] a minute. A token of
///   another tenant is recorded there only as "a token of another tenant"; its id and
///   name go to the server's log.
///
/// In the background, so the answer is not delayed.
pub(crate) fn audit_refusal(state: &AppState, refusal: Refusal<'_>) {
    let Some(raw) = refusal.path.strip_prefix("/v1/tenants/").and_then(|rest| rest.split('/').next()) else {
        return;
    };
    let Ok(tenant) = TenantId::parse(raw) else { return };
    let source = refusal.client_address.clone().unwrap_or_else(|| "unknown".into());
    if refusal.status == 401 {
        let seen = state.refusals.sources.count(&source);
        if seen <= MAX_LOGGED_REFUSALS_PER_SOURCE_PER_MINUTE {
            tracing::warn!(
                source = source.as_str(),
                tenant_id = tenant.as_str(),
                route = refusal.route,
                reason = refusal.message.as_str(),
                "request refused without a valid token"
            );
        }
        if seen == MAX_LOGGED_REFUSALS_PER_SOURCE_PER_MINUTE {
            tracing::warn!(
                source = source.as_str(),
                limit = MAX_LOGGED_REFUSALS_PER_SOURCE_PER_MINUTE,
                "more refusals from this source this minute: counted (custos_auth_failures_total), not logged"
            );
        }
        return;
    }
    let actor = if refusal.actor_of_tenant {
        custos_model::ledger::AuditActor {
            id: refusal.actor.as_ref().map(|(id, _)| id.clone()),
            name: refusal.actor.as_ref().map(|(_, name)| name.clone()),
        }
    } else {
        tracing::warn!(
            tenant_id = tenant.as_str(),
            token_id = refusal.actor.as_ref().map(|(id, _)| id.as_str()),
            token_name = refusal.actor.as_ref().map(|(_, name)| name.as_str()),
            route = refusal.route,
            "a token of another tenant was refused"
        );
        custos_model::ledger::AuditActor { id: None, name: Some("a token of another tenant".into()) }
    };
    let record = AuditRecord {
        event_id: own_event_id("auth-denied"),
        ts: Timestamp::now(),
        tenant_id: tenant.clone(),
        actor,
        actor_ip: refusal.client_address,
        action: "custos.auth.denied".to_owned(),
        outcome: custos_model::ledger::AuditOutcome::Denied,
        resource_type: Some("route".into()),
        resource_id: Some(format!("{} {}", refusal.method, refusal.route)),
        request_id: Some(refusal.request_id.to_owned()),
        trace_id: Some(refusal.trace_id),
        details: serde_json::json!({"status": refusal.status, "reason": refusal.message}),
    };
    let state = state.clone();
    let own = refusal.actor_of_tenant;
    tokio::spawn(
        async move {
            // Only a known tenant has a log; asking does not reveal anything to the caller.
            if !matches!(state.tenant_exists(&tenant).await, Ok(true)) {
                return;
            }
            let limit = if own { MAX_AUDITED_DENIALS_PER_MINUTE } else { MAX_AUDITED_FOREIGN_DENIALS_PER_MINUTE };
            let seen = state.refusals.denials.count(&(tenant.clone(), own));
            if seen == limit + 1 {
                tracing::warn!(
                    tenant_id = tenant.as_str(),
                    limit,
                    own_tokens = own,
                    "more denied requests than are audited per minute; the rest this minute are only logged"
                );
            }
            if seen <= limit {
                record_own(&*state.store, &tenant, vec![OwnRecord::Audit(record)]).await;
            }
        }
        .in_current_span(),
    );
}

/// A new unique id for a record custos writes itself.
pub fn own_event_id(what: &str) -> String {
    format!("custos-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// Signs and keeps a checkpoint of the log's current head, unless the latest kept
/// checkpoint already covers it with the current key; returns the latest checkpoint.
pub(crate) async fn checkpoint(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
) -> Result<StoredCheckpoint, ApiError> {
    let head = state.store.log_head(tenant, log).await?;
    let latest = state.store.latest_checkpoint(tenant, log).await?;
    sign_head(state, tenant, log, head, latest).await
}

/// [`checkpoint`] given the log's head and latest kept checkpoint, as just read.
async fn sign_head(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
    head: custos_store::LogHead,
    latest: Option<StoredCheckpoint>,
) -> Result<StoredCheckpoint, ApiError> {
    let key = state.ledger.key()?;
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
    // The current key, and the one it replaced while a rotation's overlap lasts.
    let signers = key.signers(&origin, Timestamp::now()).map_err(|e| ApiError::internal(&e))?;
    let note = Checkpoint { origin, size: head.size, root: head.root, extensions: Vec::new() }
        .sign_all(&signers.iter().collect::<Vec<_>>())
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
        latest => sign_head(state, tenant, log, state.store.log_head(tenant, log).await?, latest).await,
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
            let read = async {
                let head = state.store.log_head(&tenant.id, log).await?;
                let latest = state.store.latest_checkpoint(&tenant.id, log).await?;
                Ok::<_, custos_store::StoreError>((head, latest))
            };
            match read.await {
                Ok((head, latest)) if latest.as_ref().map_or(head.size == 0, |l| l.size >= head.size) => {}
                Ok((head, latest)) => match sign_head(state, &tenant.id, log, head, latest).await {
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

/// Name of the retention worker in the workers registry, logs and `/health`.
pub const RETENTION: &str = "retention";
/// The shortest audit retention accepted, in days.
pub const MIN_AUDIT_RETENTION_DAYS: u32 = 365;

/// Removes the records of every tenant log that aged past retention, every `period`.
pub fn spawn_retention(state: AppState, period: Duration) -> tokio::task::JoinHandle<()> {
    state.workers.clone().spawn_periodic(RETENTION, period, move || {
        let state = state.clone();
        async move {
            let now = Timestamp::now();
            retention_pass(&state, now).await + crate::evidence::retention_pass(&state, now).await
        }
    })
}

/// One retention pass as of `now`: for each tenant and log, the records received more
/// than the retention period before `now` lose their content (never their leaf hashes),
/// under a tombstone row, and the log records a `custos.retention.pruned` entry saying
/// what went, when and under which policy. A tenant under a legal hold keeps
/// everything. Returns the records removed.
pub async fn retention_pass(state: &AppState, now: Timestamp) -> usize {
    let tenants = match state.store.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, "listing tenants for retention failed");
            return 0;
        }
    };
    let mut removed = 0;
    for tenant in tenants {
        for log in LogName::ALL {
            let (days, policy) = match log {
                LogName::Timeline => {
                    let days = u32::try_from(tenant.retention_days.max(1)).unwrap_or(u32::MAX);
                    (days, format!("timeline: {days} days (the tenant's retention_days)"))
                }
                LogName::Audit => {
                    let days = state.config.audit_retention_days.max(MIN_AUDIT_RETENTION_DAYS);
                    (days, format!("audit: {days} days (--audit-retention-days)"))
                }
            };
            match prune_one(state, &tenant.id, log, days, policy, now).await {
                Ok(n) => removed += n,
                Err(error) => tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    tenant_id = tenant.id.as_str(),
                    log = log.as_str(),
                    "retention failed"
                ),
            }
        }
    }
    removed
}

async fn prune_one(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
    days: u32,
    policy: String,
    now: Timestamp,
) -> Result<usize, custos_store::StoreError> {
    let cutoff = now.saturating_add_micros(-(i64::from(days) * 86_400 * 1_000_000));
    let pruned = state.store.log_pruned_before(tenant, log).await?;
    let size = state.store.log_head(tenant, log).await?.size;
    // Records are in leaf order, received at non-decreasing times: the first one
    // received at or after the cutoff is found by bisection, O(log n) reads.
    let (mut low, mut high) = (pruned, size);
    while low < high {
        let middle = low + (high - low) / 2;
        match state.store.log_first_received(tenant, log, middle).await? {
            Some((index, at)) if at < cutoff => low = index + 1,
            _ => high = middle,
        }
    }
    let before = low.min(size);
    if before <= pruned {
        return Ok(0);
    }
    let prune = custos_store::LogPrune {
        before_index: before,
        received_before: cutoff,
        retention_days: days,
        policy: policy.clone(),
        pruned_at: now,
    };
    // The store appends the retention record (custos.retention.pruned) in the prune's
    // transaction, before removing anything: the signed leaf that accounts for them.
    let removed = match state.store.prune_log(tenant, log, &prune).await? {
        custos_store::PruneOutcome::Held => {
            tracing::info!(
                tenant_id = tenant.as_str(),
                log = log.as_str(),
                due = before - pruned,
                "retention held by a legal hold"
            );
            return Ok(0);
        }
        custos_store::PruneOutcome::Removed(0) => return Ok(0),
        custos_store::PruneOutcome::Removed(n) => n,
    };
    tracing::info!(
        tenant_id = tenant.as_str(),
        log = log.as_str(),
        removed,
        before_index = before,
        retention_days = days,
        "retention removed records"
    );
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}
