//! `custos incidents`: the status page's incidents through a server's API, so the API's
//! scope checks and validation apply and the server logs the change like any other.

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::cli::{ImpactArg, IncidentStatusArg, IncidentsArgs, IncidentsCommand, OutputFormat, ServerConnection};

fn impact(value: ImpactArg) -> &'static str {
    match value {
        ImpactArg::None => "none",
        ImpactArg::Minor => "minor",
        ImpactArg::Major => "major",
        ImpactArg::Critical => "critical",
    }
}

fn status(value: IncidentStatusArg) -> &'static str {
    match value {
        IncidentStatusArg::Investigating => "investigating",
        IncidentStatusArg::Identified => "identified",
        IncidentStatusArg::Monitoring => "monitoring",
        IncidentStatusArg::Resolved => "resolved",
    }
}

/// A request to the server with the token and a fresh trace context: the builder, its
/// span, and the trace id (for the command to print).
pub(crate) fn authorized(
    connection: &ServerConnection,
    method: reqwest::Method,
    path: &str,
) -> anyhow::Result<(reqwest::RequestBuilder, tracing::Span, String)> {
    let token = connection.token.as_ref().context("no token: pass --token or set CUSTOS_TOKEN")?;
    let url = format!("{}{path}", connection.server.trim_end_matches('/'));
    let name = method.to_string();
    Ok(super::traced_with_id(
        reqwest::Client::new().request(method, &url).bearer_auth(token.expose_secret()),
        &name,
        &url,
    ))
}

/// The JSON of a successful answer, or an error carrying the server's message (and the
/// field at fault).
pub(crate) async fn answer(response: reqwest::Response, span: &tracing::Span) -> anyhow::Result<Value> {
    let code = response.status();
    span.record("http.response.status_code", code.as_u16());
    let text = response.text().await.context("reading the answer")?;
    let value: Value =
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    if !code.is_success() {
        let error = &value["error"];
        let message = error["message"].as_str().map_or_else(|| value.to_string(), str::to_owned);
        match error["field"].as_str() {
            Some(field) => bail!("{code}: {message} (field {field})"),
            None => bail!("{code}: {message}"),
        }
    }
    Ok(value)
}

/// Sends one request with the token and the command's trace context; returns the JSON
/// answer, or an error carrying the server's message (and the field at fault).
pub(crate) async fn call(
    connection: &ServerConnection,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let (mut request, span, trace_id) = authorized(connection, method, path)?;
    eprintln!("trace_id: {trace_id}");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .instrument(span.clone())
        .await
        .with_context(|| format!("reaching {}{path}", connection.server.trim_end_matches('/')))?;
    answer(response, &span).await
}

fn print_table(incidents: &[Value]) {
    println!("{:<38} {:<14} {:<9} {:<21} TITLE", "ID", "STATUS", "IMPACT", "OPENED");
    for incident in incidents {
        let text = |key: &str| incident[key].as_str().unwrap_or("").to_owned();
        let opened = text("created_at");
        println!(
            "{:<38} {:<14} {:<9} {:<21} {}",
            text("id"),
            text("status"),
            text("impact"),
            opened.get(..19).unwrap_or(&opened),
            text("title")
        );
    }
}

pub async fn run(args: &IncidentsArgs) -> anyhow::Result<()> {
    let connection = &args.connection;
    match &args.command {
        IncidentsCommand::Open { title, message, impact: level, components, status: state } => {
            let body = json!({"title": title, "message": message, "impact": impact(*level),
                              "components": components, "status": status(*state)});
            let incident = call(connection, reqwest::Method::POST, "/v1/incidents", Some(body)).await?;
            tracing::info!(incident_id = incident["id"].as_str(), "incident opened");
            println!("{}", incident["id"].as_str().unwrap_or_default());
        }
        IncidentsCommand::Update { id, status: state, message, impact: level } => {
            let mut body = json!({"status": status(*state), "message": message});
            if let Some(level) = level {
                body["impact"] = json!(impact(*level));
            }
            let incident =
                call(connection, reqwest::Method::POST, &format!("/v1/incidents/{id}/updates"), Some(body)).await?;
            tracing::info!(incident_id = id.as_str(), status = incident["status"].as_str(), "incident updated");
            println!(
                "{} {}",
                incident["id"].as_str().unwrap_or_default(),
                incident["status"].as_str().unwrap_or_default()
            );
        }
        IncidentsCommand::Resolve { id, message } => {
            let body = json!({"status": "resolved", "message": message});
            let incident =
                call(connection, reqwest::Method::POST, &format!("/v1/incidents/{id}/updates"), Some(body)).await?;
            tracing::info!(incident_id = id.as_str(), "incident resolved");
            println!(
                "{} {}",
                incident["id"].as_str().unwrap_or_default(),
                incident["status"].as_str().unwrap_or_default()
            );
        }
        IncidentsCommand::List { format } => {
            let incidents = call(connection, reqwest::Method::GET, "/v1/incidents", None).await?;
            match format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&incidents)?),
                OutputFormat::Table => print_table(incidents.as_array().map(Vec::as_slice).unwrap_or_default()),
            }
        }
    }
    Ok(())
}
