//! Who is calling, and may they do this: bearer tokens and the tenant check.
//!
//! Every tenant route calls [`Caller::tenant_access`], which applies the same order
//! everywhere: no or bad token → 401; token lacks the scope → 403 naming the missing
//! scope and nothing else; tenant unknown (checked only once the scope allows it, so
//! tenants cannot be enumerated) → 404.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use custos_model::{Permission, Scope, TenantId, TenantSelector, Timestamp, token};
use custos_store::TokenRecord;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// What the token did on this request, for `custos_api_token_invocations_total`: the
/// request's middleware provides the slot, [`Caller::tenant_access`] fills it.
#[derive(Debug, Default)]
pub(crate) struct Invocation {
    pub tenant: Option<TenantId>,
    pub permission: Option<Permission>,
    /// The token's id and name, once authenticated (for the audit record of a denial).
    pub actor: Option<(String, String)>,
    /// On a denial: whether the token's scopes name the path's tenant (or every tenant).
    /// A token of another tenant is not named in the victim's audit log.
    pub actor_of_tenant: bool,
}

pub(crate) type InvocationSlot = std::sync::Arc<std::sync::Mutex<Invocation>>;

tokio::task_local! {
    pub(crate) static INVOCATION: InvocationSlot;
}

fn note_invocation(update: impl FnOnce(&mut Invocation)) {
    let _ = INVOCATION.try_with(|slot| update(&mut slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)));
}

/// An authenticated caller: a live token.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub token: TokenRecord,
}

/// A 401, counted by `reason` in `custos_auth_failures_total`.
fn unauthorized(state: &AppState, reason: &str, message: &str) -> ApiError {
    state.metrics.count_auth_failure(reason);
    tracing::Span::current().record("custos.auth.outcome", "unauthenticated");
    ApiError::new(ErrorCode::Unauthorized, message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            unauthorized(state, "missing_token", "missing Authorization header; send 'Authorization: Bearer <token>'")
        })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| {
                unauthorized(state, "malformed_header", "the Authorization header must be 'Bearer <token>'")
            })?;
        let record = state
            .tokens
            .lookup(state, &token::hash_secret(secret))
            .await?
            .ok_or_else(|| unauthorized(state, "unknown_token", "invalid token"))?;
        if !record.is_active(Timestamp::now()) {
            return Err(if record.revoked_at.is_some() {
                unauthorized(state, "revoked_token", "token revoked")
            } else {
                unauthorized(state, "expired_token", "token expired")
            });
        }
        tracing::Span::current().record("actor", record.id.as_str());
        note_invocation(|i| i.actor = Some((record.id.clone(), record.name.clone())));
        Ok(Caller { token: record })
    }
}

/// An optional caller: no `Authorization` header is `None`; a header that does not
/// name a live token is still a 401.
impl axum::extract::OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        if parts.headers.get(AUTHORIZATION).is_none() {
            return Ok(None);
        }
        <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state).await.map(Some)
    }
}

impl Caller {
    /// Checks that the token holds `permission` on some tenant (any tenant, or all):
    /// enough to read a page that shows no tenant's data.
    pub fn reads_some_tenant(&self, state: &AppState, permission: Permission) -> Result<(), ApiError> {
        note_invocation(|i| i.permission = Some(permission));
        if !self
            .token
            .scopes
            .iter()
            .any(|scope| scope.permission == permission || scope.permission == Permission::Admin)
        {
            state.metrics.count_auth_failure("missing_scope");
            tracing::Span::current().record("custos.auth.outcome", "forbidden");
            return Err(ApiError::new(ErrorCode::Forbidden, format!("missing scope {}", permission.as_str())));
        }
        tracing::Span::current().record("custos.auth.outcome", "allowed");
        Ok(())
    }

    pub fn has(&self, permission: Permission, tenant: &TenantId) -> bool {
        self.token.scopes.iter().any(|scope| scope.grants(permission, tenant))
    }

    /// Checks `permission` on every tenant (a `…#tenant/*` scope): platform-wide
    /// operations such as the public status page's incidents.
    pub fn platform_access(&self, state: &AppState, permission: Permission) -> Result<(), ApiError> {
        note_invocation(|i| i.permission = Some(permission));
        if !self.token.scopes.iter().any(|scope| scope.grants_all(permission)) {
            state.metrics.count_auth_failure("missing_scope");
            tracing::Span::current().record("custos.auth.outcome", "forbidden");
            let missing = Scope::new(permission, TenantSelector::All);
            return Err(ApiError::new(ErrorCode::Forbidden, format!("missing scope {missing}")));
        }
        tracing::Span::current().record("custos.auth.outcome", "allowed");
        Ok(())
    }

    /// Checks `permission` on the tenant named in the path, in the documented order.
    pub async fn tenant_access(
        &self,
        state: &AppState,
        raw_tenant: &str,
        permission: Permission,
    ) -> Result<TenantId, ApiError> {
        note_invocation(|i| i.permission = Some(permission));
        let tenant = TenantId::parse(raw_tenant).map_err(|_| ApiError::not_found("tenant not found"))?;
        if !self.has(permission, &tenant) {
            let own = self.token.scopes.iter().any(|scope| scope.tenant.matches(&tenant));
            note_invocation(|i| i.actor_of_tenant = own);
            state.metrics.count_auth_failure("missing_scope");
            tracing::Span::current().record("custos.auth.outcome", "forbidden");
            let missing = Scope::new(permission, TenantSelector::One(tenant));
            return Err(ApiError::new(ErrorCode::Forbidden, format!("missing scope {missing}")));
        }
        tracing::Span::current().record("tenant_id", tenant.as_str());
        tracing::Span::current().record("custos.auth.outcome", "allowed");
        if !state.tenant_exists(&tenant).await? {
            return Err(ApiError::not_found("tenant not found"));
        }
        note_invocation(|i| i.tenant = Some(tenant.clone()));
        Ok(tenant)
    }
}

/// How long a token found in the store is trusted without asking again: a token
/// revoked (by the CLI, or another replica) stops working within this long.
pub(crate) const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Most tokens remembered; the cache is emptied when it fills.
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// Tokens recently found in the store, by secret hash, so a busy client does not cost
/// a database read per request. Unknown tokens are never cached; expiry is checked on
/// every request against the cached record.
#[derive(Debug, Default, Clone)]
pub(crate) struct TokenCache {
    entries: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, (TokenRecord, std::time::Instant)>>>,
}

impl TokenCache {
    pub(crate) async fn lookup(&self, state: &AppState, secret_hash: &str) -> Result<Option<TokenRecord>, ApiError> {
        {
            let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((record, fetched)) = entries.get(secret_hash)
                && fetched.elapsed() < TOKEN_CACHE_TTL
            {
                return Ok(Some(record.clone()));
            }
        }
        let record = state.store.token_by_secret_hash(secret_hash).await?;
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &record {
            Some(found) => {
                if entries.len() >= TOKEN_CACHE_ENTRIES {
                    entries.clear();
                }
                entries.insert(secret_hash.to_owned(), (found.clone(), std::time::Instant::now()));
            }
            None => {
                entries.remove(secret_hash);
            }
        }
        Ok(record)
    }
}
