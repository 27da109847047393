//! The middleware every request passes through: it names the request (`X-Request-Id`,
//! honoured when sane, generated otherwise), continues or starts its W3C trace, opens
//! the span whose fields every log line inside it inherits, logs the start and the
//! finish with status and duration, and gives every error response the JSON shape.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custos_telemetry::HttpLabels;
use custos_telemetry::metrics::InvocationLabels;
use custos_telemetry::trace_context::continue_trace;
use tracing::{Instrument, field::Empty};

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode, ErrorResponse};

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_owned())
}

pub(crate) async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id =
        request.headers().get(REQUEST_ID).and_then(sane_request_id).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let client_address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string());
    // Span name and attributes follow the OpenTelemetry HTTP server conventions; the
    // undotted fields are the log lines' own.
    let span = tracing::info_span!(
        "request",
        otel.name = %route.as_ref().map_or_else(|| method.clone(), |r| format!("{method} {r}")),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route.as_deref(),
        http.response.status_code = Empty,
        url.path = %request.uri().path(),
        client.address = client_address.as_deref(),
        custos.auth.outcome = Empty,
        method = %method,
        route = route.as_deref().unwrap_or("unmatched"),
        request_id = %request_id,
        trace_id = Empty,
        span_id = Empty,
        tenant_id = Empty,
        actor = Empty,
        records = Empty,
        status = Empty,
        duration_ms = Empty,
        error_code = Empty,
        error_message = Empty,
    );
    let trace = {
        let headers = request.headers();
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        continue_trace(&span, header(&TRACEPARENT), header(&TRACESTATE))
    };
    span.record("trace_id", trace.trace_id_hex());
    span.record("span_id", trace.span_id_hex());
    // Handlers that hand work to a background task link it to this request.
    request.extensions_mut().insert(trace);
    let route = route.unwrap_or_else(|| "unmatched".to_owned());

    async move {
        // One line per request at info (its end); the start is for debugging hangs.
        tracing::debug!("request started");
        let in_flight = InFlight::enter(&state.metrics.http_in_flight);
        let invocation = crate::auth::InvocationSlot::default();
        // Probes and scrapes are answered however busy the server is: a liveness probe
        // refused under load would get a busy process restarted.
        let slot = if route.starts_with("/health") || route == "/metrics" {
            Ok(None)
        } else {
            state.request_slots.clone().try_acquire_owned().map(Some)
        };
        let response = match slot {
            // Too many requests at once: shed this one rather than queue it behind them.
            Err(_) => {
                state.metrics.count_shed("overloaded");
                let mut response = ApiError::new(
                    ErrorCode::Unavailable,
                    "the server is at its limit of concurrent requests (--max-concurrent-requests); retry shortly",
                )
                .into_response();
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Ok(slot) => {
                let unbounded = streams_without_time_limit(&method, &route);
                let handler = crate::auth::INVOCATION.scope(invocation.clone(), next.run(request));
                let mut task = tokio::task::spawn(
                    async move {
                        let response = handler.await;
                        drop(slot);
                        response
                    }
                    .in_current_span(),
                );
                let limit = state.config.request_timeout;
                let joined =
                    if unbounded { Ok((&mut task).await) } else { tokio::time::timeout(limit, &mut task).await };
                match joined {
                    Ok(Ok(response)) => response,
                    // A panicking handler must not take the connection down silently.
                    Ok(Err(join_error)) => ApiError::internal(&join_error).into_response(),
                    Err(_) => {
                        // Its transaction, if any, rolls back as the task is dropped.
                        task.abort();
                        state.metrics.count_shed("timeout");
                        ApiError::new(
                            ErrorCode::Unavailable,
                            format!(
                                "the request took longer than {:.0} s (--request-timeout) and was stopped; retry later",
                                limit.as_secs_f64()
                            ),
                        )
                        .into_response()
                    }
                }
            }
        };
        let mut response = with_error_body(response, &request_id);
        let status = response.status();
        drop(in_flight);
        let elapsed = started.elapsed();
        let labels = HttpLabels { method: method.clone(), route: route.clone(), status: status.as_u16() };
        state.metrics.observe_request(&labels, elapsed.as_secs_f64(), trace.sampled.then(|| trace.trace_id_hex()));
        state.requests.observe(crate::status::Surface::of_route(&route), status.as_u16(), elapsed);
        let invocation = std::mem::take(&mut *invocation.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if matches!(status.as_u16(), 401 | 403) {
            crate::ledger::audit_refusal(
                &state,
                crate::ledger::Refusal {
                    status: status.as_u16(),
                    path: &path,
                    method: &method,
                    route: &route,
                    actor: invocation.actor.clone(),
                    actor_of_tenant: invocation.actor_of_tenant,
                    client_address: client_address.clone(),
                    request_id: &request_id,
                    trace_id: trace.trace_id_hex(),
                    message: response.extensions().get::<ErrorBody>().map(|e| e.message.clone()).unwrap_or_default(),
                },
            );
        }
        if let Some(permission) = invocation.permission {
            state.metrics.count_invocation(&InvocationLabels {
                tenant: invocation.tenant.map(|t| t.as_str().to_owned()).unwrap_or_default(),
                scope: permission.as_str().to_owned(),
                status: status.as_u16(),
            });
        }
        let span = tracing::Span::current();
        span.record("status", status.as_u16());
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            // Only 5xx marks the server span failed (a 4xx is the client's error).
            span.record("otel.status_code", "ERROR");
        }
        span.record("duration_ms", (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0);
        if let Some(error) = response.extensions().get::<ErrorBody>() {
            span.record("error_code", error.code.as_str());
            span.record("error_message", error.message.as_str());
        }
        let quiet = invocation.actor.as_ref().is_some_and(|(id, _)| state.config.quiet_token_ids.contains(id));
        if status.is_server_error() {
            tracing::error!("request finished");
        } else if quiet {
            tracing::debug!("request finished");
        } else {
            tracing::info!("request finished");
        }
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert(REQUEST_ID, value);
        }
        if let Ok(value) = HeaderValue::from_str(&trace.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
        response
    }
    .instrument(span)
    .await
}

/// Counts a request in flight until dropped, so a cancelled request is not left counted.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Renders the JSON error body with the request id; gives a JSON body to error
/// responses produced outside our handlers (axum's 405, a missing route).
fn with_error_body(response: Response, request_id: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // Health answers are errors with a documented body of their own (503 with the
    // failing checks); they keep it.
    let is_health = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == "application/health+json");
    if is_health && response.extensions().get::<ErrorBody>().is_none() {
        return response;
    }
    // Console pages answer errors as HTML pages of their own (a login form that says
    // what was wrong); only our handlers produce HTML.
    let is_page = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_page && response.extensions().get::<ErrorBody>().is_none() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut error = parts.extensions.remove::<ErrorBody>().unwrap_or_else(|| ErrorBody {
        code: ErrorCode::for_status(status),
        message: status.canonical_reason().unwrap_or("error").to_lowercase(),
        request_id: None,
        field: None,
        line: None,
    });
    drop(body);
    error.request_id = Some(request_id.to_owned());
    let json = serde_json::to_vec(&ErrorResponse { error: error.clone() }).expect("error bodies serialize");
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(error);
    Response::from_parts(parts, Body::from(json))
}

/// Requests that move a large body in one request and may take longer than
/// `--request-timeout` by design: an evidence upload (streamed in) and a bundle's sealing
/// (every artifact re-hashed). Each is bounded by its size limits instead. Responses that
/// stream out (downloads, exports) answer their head at once, which is all the timeout
/// covers.
fn streams_without_time_limit(method: &str, route: &str) -> bool {
    matches!(
        (method, route),
        ("PUT", "/v1/tenants/{tenant}/evidence/cases/{case}/artifacts/{name}")
            | ("POST", "/v1/tenants/{tenant}/evidence/snapshots")
    )
}
