//! Console login and logout.
//!
//! `POST /admin/login` takes a token and, if it is live and grants a console role on
//! some tenant, stores a session (only the SHA-256 of its secret) and sets the secret
//! as the `custos_session` cookie: `HttpOnly` (no script reads it), `SameSite=Strict`
//! (no other site's page sends it), `Path=/admin`, and `Secure` when the request came
//! over HTTPS (directly or, per `X-Forwarded-Proto`, through a proxy). A session lasts
//! [`SESSION_HOURS`], never beyond its token's expiry, and ends at once when the token
//! is revoked or on logout.
//!
//! Forgery: every form that changes state carries a token that a third-party page
//! cannot know. The logout form's is derived from the session secret; the login form,
//! which has no session yet, uses a double-submit nonce (a short-lived cookie that
//! must equal the form field).

use axum::Form;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use custos_model::{Permission, Timestamp, console, token};
use custos_store::ConsoleSession;
use serde::Deserialize;

use super::ConsoleUser;
use crate::AppState;
use crate::error::ApiError;

pub(crate) const SESSION_COOKIE: &str = "custos_session";
const LOGIN_COOKIE: &str = "custos_login";
/// How long a console session lasts (capped by its token's expiry).
pub(crate) const SESSION_HOURS: i64 = 12;
/// How long the login form stays valid.
const LOGIN_FORM_SECONDS: i64 = 600;

/// The value of cookie `name` in the request, if sent and not empty.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let values = headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok());
    console::cookie(values, name).map(str::to_owned)
}

/// Whether the client reached us over HTTPS (so cookies may be marked `Secure`).
fn https(headers: &HeaderMap, parts_scheme: Option<&str>) -> bool {
    parts_scheme == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().is_some_and(|first| first.trim().eq_ignore_ascii_case("https")))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"))
        .expect("cookie values are base64url")
}

/// A `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie(parts: &Parts) -> HeaderValue {
    set_cookie(SESSION_COOKIE, "", "/admin", 0, https(&parts.headers, parts.uri.scheme_str()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

fn login_page(next: &str, nonce: &str, error: Option<&str>, status: StatusCode, secure: bool) -> Response {
    let mut response = crate::pages::page_response(crate::pages::console::login(next, nonce, error));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, nonce, "/admin/login", LOGIN_FORM_SECONDS, secure));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /admin/login`: the form.
pub(crate) async fn login_form(headers: HeaderMap, Query(query): Query<LoginQuery>) -> Response {
    let secure = https(&headers, None);
    login_page(console::safe_next(query.next.as_deref()), &token::generate_nonce(), None, StatusCode::OK, secure)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

/// `POST /admin/login`: checks the form's nonce and the token, opens a session.
pub(crate) async fn login(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let secure = https(&headers, None);
    let next = console::safe_next(form.next.as_deref()).to_owned();
    let retry =
        |message: &str, status: StatusCode| login_page(&next, &token::generate_nonce(), Some(message), status, secure);
    let nonce_ok = cookie(&headers, LOGIN_COOKIE).is_some_and(|nonce| token::same_secret(&nonce, &form.csrf));
    if !nonce_ok {
        state.metrics.count_auth_failure("csrf");
        return retry(
            "The login form expired or did not come from this server; please try again.",
            StatusCode::FORBIDDEN,
        );
    }
    let secret = form.token.trim();
    let now = Timestamp::now();
    let record = match state.store.token_by_secret_hash(&token::hash_secret(secret)).await {
        Ok(record) => record,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let record = match record {
        Some(record) if record.is_active(now) => record,
        Some(_) => {
            state.metrics.count_auth_failure("expired_token");
            return retry("That token is revoked or expired.", StatusCode::UNAUTHORIZED);
        }
        None => {
            state.metrics.count_auth_failure("unknown_token");
            return retry("That is not a valid token.", StatusCode::UNAUTHORIZED);
        }
    };
    let console_role =
        record.scopes.iter().any(|scope| matches!(scope.permission, Permission::Admin | Permission::ObsRead));
    if !console_role {
        state.metrics.count_auth_failure("missing_scope");
        return retry(
            "That token grants no console role: the console needs admin or obs:read on some tenant.",
            StatusCode::FORBIDDEN,
        );
    }
    let (secret, secret_hash) = token::generate_session();
    let lifetime_end = now.saturating_add_micros(SESSION_HOURS * 3_600_000_000);
    let expires_at = record.expires_at.map_or(lifetime_end, |token_end| token_end.min(lifetime_end));
    let session =
        ConsoleSession { secret_hash, token_id: record.id.clone(), created_at: now, expires_at, ended_at: None };
    if let Err(error) = state.store.create_console_session(&session).await {
        return ApiError::from(error).into_response();
    }
    tracing::Span::current().record("actor", record.id.as_str());
    tracing::info!(token_id = %record.id, "console session opened");
    let mut response = Redirect::to(&next).into_response();
    let max_age = expires_at.micros_since(now) / 1_000_000;
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &secret, "/admin", max_age, secure));
    headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/admin/login", 0, secure));
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogoutForm {
    csrf: String,
}

/// `POST /admin/logout`: ends the session (its form's token must match).
pub(crate) async fn logout(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(expected) = user.csrf.as_deref() else {
        // A bearer caller has no session to end.
        return Redirect::to("/admin/login").into_response();
    };
    if !token::same_secret(expected, &form.csrf) {
        state.metrics.count_auth_failure("csrf");
        return super::error_page(ApiError::new(
            crate::error::ErrorCode::Forbidden,
            "the logout form did not come from this session",
        ));
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Err(error) = state.store.end_console_session(&token::hash_secret(&secret), Timestamp::now()).await
    {
        return ApiError::from(error).into_response();
    }
    tracing::info!(token_id = %user.caller.token.id, "console session ended");
    let mut response = Redirect::to("/admin/login").into_response();
    let secure = https(&headers, None);
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/admin", 0, secure));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_are_http_only_strict_and_secure_over_https() {
        let plain = set_cookie(SESSION_COOKIE, "css_x", "/admin", 60, false);
        assert_eq!(plain, "custos_session=css_x; Path=/admin; Max-Age=60; HttpOnly; SameSite=Strict");
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(https(&headers, None));
        assert!(set_cookie(SESSION_COOKIE, "v", "/admin", 1, true).to_str().unwrap().ends_with("; Secure"));
    }
}
