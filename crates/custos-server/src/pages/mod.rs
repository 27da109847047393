//! Server-rendered HTML pages (the status page, the operator console), embedded in the
//! binary: no build step, no script needed to read them, a stylesheet that works on a
//! laptop and a phone. States are shown in words as well as colour.

pub(crate) mod status;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use custos_model::status::ComponentStatus;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// What a page may load: nothing but its own inline stylesheet and same-origin images;
/// no script, no plugin, no form posting elsewhere.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'";

/// A page as a response, with the headers every page carries: a strict content
/// security policy, no MIME sniffing, no referrer sent elsewhere.
pub(crate) fn page_response(markup: Markup) -> Response {
    let mut response = markup.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// The stylesheet every page shares.
const CSS: &str = r#"
:root { --ok:#1e7b34; --degraded:#b58100; --partial:#c45a00; --major:#b3261e; --maint:#1b5fab; --none:#c9ced6;
  --fg:#1c1f24; --muted:#5b6270; --line:#e3e6eb; --bg:#ffffff; --panel:#f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 960px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5rem; margin: 8px 0 16px; }
h2 { font-size: 1.15rem; margin: 28px 0 10px; }
h3 { font-size: 1rem; margin: 0; }
a { color: var(--maint); }
.muted { color: var(--muted); font-size: .9rem; }
.banner { padding: 14px 16px; border-radius: 6px; color: #fff; font-weight: 600; font-size: 1.1rem; }
.panel { border: 1px solid var(--line); border-radius: 6px; margin-bottom: 10px; padding: 12px 14px; background: var(--bg); }
.row { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 6px 16px; align-items: baseline; }
.state { font-weight: 600; white-space: nowrap; }
.state::before { content: ""; display: inline-block; width: .7em; height: .7em; border-radius: 50%; margin-right: .4em; background: currentColor; }
.bars { display: flex; gap: 1px; height: 30px; margin: 8px 0 2px; }
.bars span { flex: 1; border-radius: 1px; min-width: 1px; }
.axis { display: flex; justify-content: space-between; }
.members { margin: 8px 0 0; padding: 0; list-style: none; }
.members li { display: flex; justify-content: space-between; gap: 12px; padding: 4px 0; border-top: 1px solid var(--line); }
.updates { margin: 8px 0 0; padding-left: 18px; }
.updates li { margin: 4px 0; }
footer { margin: 32px 0 8px; border-top: 1px solid var(--line); padding-top: 10px; }
.b-operational { background: var(--ok); } .c-operational { color: var(--ok); }
.b-degraded_performance { background: var(--degraded); } .c-degraded_performance { color: var(--degraded); }
.b-partial_outage { background: var(--partial); } .c-partial_outage { color: var(--partial); }
.b-major_outage { background: var(--major); } .c-major_outage { color: var(--major); }
.b-under_maintenance { background: var(--maint); } .c-under_maintenance { color: var(--maint); }
.b-none { background: var(--none); }
@media (max-width: 600px) { main { padding: 10px; } .bars { height: 24px; } }
"#;

/// A whole page: `title`, the shared stylesheet, and `body` inside `<main>`. With
/// `refresh`, the browser reloads it every that many seconds (no script needed).
pub(crate) fn layout(title: &str, refresh: Option<u32>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { main { (body) } }
        }
    }
}

/// A state in colour and in words.
pub(crate) fn state(status: ComponentStatus) -> Markup {
    html! { span class={ "state c-" (status.as_str()) } { (status.label()) } }
}

/// A ratio as a percentage with two decimals (`99.95 %`), or an em dash without data.
pub(crate) fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "—".to_owned(), |r| format!("{:.2} %", r * 100.0))
}
