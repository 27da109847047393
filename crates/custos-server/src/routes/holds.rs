//! Legal holds: while a tenant has an active hold, retention removes none of its
//! records. Placing and releasing one is an admin operation, recorded in the tenant's
//! timeline and audit log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use custos_model::ledger::AuditActor;
use custos_model::{Permission, Timestamp};
use custos_store::LegalHold;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ledger::{AdminAction, action_records};

/// Longest hold reason, in characters.
pub const MAX_REASON_CHARS: usize = 1024;

/// A hold to place.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldInput {
    /// 1..=128 of `A-Za-z0-9._:-`; generated when absent.
    pub id: Option<String>,
    /// Why (a case or matter reference), at most 1024 characters.
    pub reason: String,
}

/// The caller, as records name who acted.
pub(crate) fn actor(caller: &Caller) -> AuditActor {
    AuditActor { id: Some(caller.token.id.clone()), name: Some(caller.token.name.clone()) }
}

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/holds", tag = "audit log",
    summary = "Place a legal hold: retention removes nothing of the tenant's while it is active",
    params(("tenant" = String, Path)),
    request_body(content((HoldInput = "application/json"))),
    responses(
        (status = 201, body = LegalHold),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 409, description = "A hold with this id exists", body = crate::error::ErrorResponse),
        (status = 422, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn place_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::Admin).await?;
    let input: HoldInput = crate::body::read_json(&headers, body, 64 * 1024).await?;
    let id = match input.id {
        Some(id) => {
            custos_model::check::identifier("id", &id, 128).map_err(ApiError::invalid)?;
            id
        }
        None => format!("hold_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
    };
    let reason = input.reason.trim().to_owned();
    custos_model::check::text("reason", &reason, MAX_REASON_CHARS).map_err(ApiError::invalid)?;
    let hold =
        LegalHold { id, reason, created_by: caller.token.id.clone(), created_at: Timestamp::now(), released_at: None };
    let action = AdminAction {
        kind: "custos.hold.placed",
        actor: actor(&caller),
        resource_type: "legal_hold",
        resource_id: &hold.id,
        details: serde_json::json!({"reason": hold.reason}),
    };
    // The hold and its records commit together, or the request fails and nothing changed.
    state.store.create_hold(&tenant, &hold, &action_records(&tenant, &action)?).await?;
    crate::evidence::spawn_mirror_holds(&state, &tenant, None, action.actor, "custos.hold.placed");
    Ok((StatusCode::CREATED, Json(hold)).into_response())
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/holds", tag = "audit log",
    summary = "The tenant's legal holds, newest first (released ones too)",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<LegalHold>),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["audit:read"]))
)]
pub(crate) async fn list_holds(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::AuditRead).await?;
    Ok(Json(state.store.holds(&tenant).await?).into_response())
}

#[utoipa::path(
    delete, path = "/v1/tenants/{tenant}/holds/{hold}", tag = "audit log",
    summary = "Release a legal hold (kept, with its release time)",
    params(("tenant" = String, Path), ("hold" = String, Path)),
    responses(
        (status = 200, body = LegalHold),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, description = "No active hold with this id", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn release_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::Admin).await?;
    let active = state.store.holds(&tenant).await?.into_iter().find(|h| h.id == id && h.released_at.is_none());
    let hold = active.ok_or_else(|| ApiError::not_found(format!("no active legal hold {id:?}")))?;
    let action = AdminAction {
        kind: "custos.hold.released",
        actor: actor(&caller),
        resource_type: "legal_hold",
        resource_id: &hold.id,
        details: serde_json::json!({"reason": hold.reason, "placed_at": hold.created_at}),
    };
    // The release is on the record before it can enable a prune: the store appends the
    // audit record in the release's transaction, and the database refuses a release
    // that does not name it.
    let hold = state.store.release_hold(&tenant, &id, Timestamp::now(), &action_records(&tenant, &action)?).await?;
    crate::evidence::spawn_mirror_holds(&state, &tenant, None, action.actor, "custos.hold.released");
    Ok(Json(hold).into_response())
}
