//! `custos obs`: what a server has recorded, read through its API (so its scopes apply).

use std::fmt::Write as _;

use serde_json::Value;

use crate::cli::{ObsArgs, ObsCommand};

pub async fn run(args: &ObsArgs) -> anyhow::Result<()> {
    match &args.command {
        ObsCommand::Trace { trace_id, tenant, from, to, json } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (name, value) in [("from", from), ("to", to)] {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
            let path = format!("/v1/tenants/{tenant}/traces/{trace_id}?{}", query.finish());
            let trace = super::incidents::call(&args.connection, reqwest::Method::GET, &path, None).await?;
            tracing::info!(records = trace["items"].as_array().map_or(0, Vec::len), "trace read");
            if *json {
                println!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                print!("{}", render_trace(&trace));
            }
            Ok(())
        }
    }
}

/// The trace as a tree: the trace at the root, its records below in time order, each
/// with its time, kind, id and summary.
pub fn render_trace(trace: &Value) -> String {
    let mut out = String::new();
    let id = trace["trace_id"].as_str().unwrap_or("");
    let _ = write!(out, "trace {id}");
    if let Some(url) = trace["trace_url"].as_str() {
        let _ = write!(out, "  {url}");
    }
    out.push('\n');
    let items = trace["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        out.push_str("└─ (no records carry this trace id)\n");
    }
    for (n, item) in items.iter().enumerate() {
        let branch = if n + 1 == items.len() { "└─" } else { "├─" };
        let at = item["at"].as_str().unwrap_or("");
        let _ = writeln!(
            out,
            "{branch} {}  {:<14} {:<40} {}",
            at.get(..23).map_or(at, |t| t),
            item["type"].as_str().unwrap_or(""),
            item["id"].as_str().unwrap_or(""),
            item["summary"].as_str().unwrap_or("")
        );
    }
    let omitted: Vec<&str> = trace["omitted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !omitted.is_empty() {
        let _ = writeln!(out, "(not shown, the token may not read them: {})", omitted.join(", "));
    }
    if let (Some(from), Some(to)) = (trace["searched"]["from"].as_str(), trace["searched"]["to"].as_str()) {
        let _ = writeln!(out, "(rule runs and syncs searched from {from} to {to}; --from/--to widen it)");
    }
    if trace["truncated"].as_bool() == Some(true) {
        out.push_str("(truncated: at most 1000 records of each kind, the newest)\n");
    }
    out
}
