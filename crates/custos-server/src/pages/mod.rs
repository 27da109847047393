//! Server-rendered HTML pages (the status page, the operator console), embedded in the
//! binary: no build step, no script needed to read them, a stylesheet that works on a
//! laptop and a phone. States are shown in words as well as colour.

pub(crate) mod console;
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
main:has(.console-nav), main:has(.login) { max-width: 1280px; }
.console-nav { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; padding: 8px 0; border-bottom: 1px solid var(--line); }
.console-nav .spacer { flex: 1; }
.jump { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 4px 0 8px; }
form.inline { display: inline; margin: 0; }
button { font: inherit; padding: 5px 12px; border: 1px solid var(--muted); border-radius: 4px; background: var(--panel); cursor: pointer; }
input, select { font: inherit; padding: 4px 6px; border: 1px solid var(--muted); border-radius: 4px; max-width: 100%; }
.login { display: flex; flex-direction: column; gap: 8px; max-width: 420px; }
.alert { padding: 10px 12px; border-radius: 6px; background: #fdecea; color: var(--major); border: 1px solid var(--major); }
.table { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { text-align: left; vertical-align: top; padding: 6px 10px; border-top: 1px solid var(--line); }
thead th { border-top: 0; background: var(--panel); white-space: nowrap; }
td.error { max-width: 28em; overflow-wrap: anywhere; }
td.details { max-width: 32em; overflow-wrap: anywhere; }
.verified { padding: 10px 12px; border-radius: 6px; background: #e8f5e9; color: var(--ok); border: 1px solid var(--ok); }
.light { font-weight: 600; white-space: nowrap; }
.light::before { content: ""; display: inline-block; width: .75em; height: .75em; border-radius: 50%; margin-right: .35em; background: currentColor; }
.l-ok { color: var(--ok); } .l-warn { color: var(--degraded); } .l-bad { color: var(--major); } .l-none { color: var(--muted); }
.c-bad { color: var(--major); }
svg.spark { vertical-align: middle; }
.s-ok { fill: var(--ok); } .s-warn { fill: var(--degraded); } .s-bad { fill: var(--major); } .s-none { fill: var(--none); }
.s-line { fill: none; stroke: var(--maint); stroke-width: 1.5; }
.grid2 { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
section h3 { margin: 16px 0 6px; }
.silent { columns: 2; padding-left: 18px; }
.filters { display: flex; flex-wrap: wrap; gap: 10px 14px; align-items: flex-end; padding: 12px; border: 1px solid var(--line); border-radius: 6px; background: var(--panel); }
.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); gap: 2px; }
.filters .actions { display: flex; gap: 12px; align-items: center; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
.facts dt { color: var(--muted); } .facts dd { margin: 0; overflow-wrap: anywhere; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow-x: auto; font-size: .85rem; }
@media (max-width: 600px) { main { padding: 10px; } .bars { height: 24px; } .grid2 { grid-template-columns: minmax(0, 1fr); } .silent { columns: 1; } }
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
