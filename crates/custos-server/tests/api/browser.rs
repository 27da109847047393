//! Pages in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/test.sh`). Each test saves
//! screenshots under `target/screenshots/`, to be looked at.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custos_server::status::Evaluator;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{Backend, JSON, NDJSON, TestApp, ndjson};

/// A chromedriver of this test's own and a browser session in it, both ended on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    pub async fn start() -> Browser {
        Self::start_with_downloads(None).await
    }

    /// With downloads saved to `downloads` without asking.
    pub async fn start_with_downloads(downloads: Option<&std::path::Path>) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                            "--window-size=1280,1600"],
                   "prefs": {"download.default_directory": downloads.map(|d| d.display().to_string()),
                             "download.prompt_for_download": false}}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector).capabilities(capabilities).connect(&url).await.expect("a session");
        Browser { client, driver }
    }

    /// Waits until the page's URL contains `part` (after a click that navigates).
    pub async fn wait_for_url(&self, part: &str) {
        let started = Instant::now();
        loop {
            let url = self.client.current_url().await.unwrap();
            if url.as_str().contains(part) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "still at {url}, waiting for {part}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves the page as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Whether the page fits the window's width (nothing to scroll sideways).
    pub async fn fits_width(&self) -> bool {
        let fits = self
            .client
            .execute("return document.documentElement.scrollWidth <= window.innerWidth;", vec![])
            .await
            .unwrap();
        fits == json!(true)
    }
}

fn hours_ago(hours: f64) -> String {
    custos_model::Timestamp::from_micros(custos_model::Timestamp::now().as_micros() - (hours * 3_600_000_000.0) as i64)
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_reads_in_a_browser_on_a_laptop_and_a_phone() {
    let app = TestApp::start(Backend::Sqlite).await;
    let admin = app.token(&["admin#tenant/*"]).await;
    let put = app
        .put_json(&admin, "/v1/tenants/acme/components/okta-prod", &json!({"kind": "connector", "provider": "okta"}))
        .await;
    assert!(put.status().is_success());
    let sync = ndjson(&[json!({"id": "s1", "integration_id": "okta-prod", "triggered_by": "scheduled",
        "status": "succeeded", "started_at": hours_ago(7.1), "finished_at": hours_ago(7.0)})]);
    app.post(&admin, "/v1/tenants/acme/connector-syncs", NDJSON, sync).await;
    let incident = json!({"title": "Elevated API errors", "impact": "minor", "components": ["api"],
        "message": "Some requests fail with 502 behind the load balancer."});
    assert_eq!(app.post(&admin, "/v1/incidents", JSON, incident.to_string()).await.status(), 201);
    let window = json!({"title": "Database upgrade", "components": ["delivery"],
        "starts_at": hours_ago(0.5), "ends_at": hours_ago(-1.0)});
    assert_eq!(app.post(&admin, "/v1/maintenance", JSON, window.to_string()).await.status(), 201);
    let mut evaluator = Evaluator::default();
    for _ in 0..3 {
        evaluator.pass(&app.state).await.unwrap();
    }

    let browser = Browser::start().await;
    browser.client.goto(&app.url("/status")).await.unwrap();
    assert_eq!(browser.client.title().await.unwrap(), "custos status");
    let banner = browser.client.find(Locator::Id("indicator")).await.unwrap();
    assert_eq!(banner.attr("data-indicator").await.unwrap().as_deref(), Some("critical"));
    assert_eq!(banner.text().await.unwrap(), "Major System Outage");
    assert_eq!(browser.count("section[id^='component-']").await, 5);
    assert_eq!(browser.count(".bars span").await, 5 * 90, "90 bars per component");
    assert!(browser.text("#component-api").await.contains("Degraded performance"), "the incident's floor");
    assert!(browser.text("#component-delivery").await.contains("Under maintenance"));
    assert!(browser.text("#component-ingestion").await.contains("Major outage"), "one stale connector of one");
    let body = browser.text("body").await;
    assert!(body.contains("Elevated API errors") && body.contains("Database upgrade"), "{body}");
    assert!(body.contains("Opened automatically: 1 of 1 connectors down"), "{body}");
    assert!(!body.contains("acme") && !body.contains("okta"), "the public page names no tenant: {body}");
    assert!(browser.fits_width().await);
    browser.screenshot("status").await;

    browser.client.set_window_size(390, 1400).await.unwrap();
    browser.client.refresh().await.unwrap();
    assert!(browser.fits_width().await, "readable on a phone without scrolling sideways");
    browser.screenshot("status-phone").await;

    browser.client.goto(&app.url("/status/badge.svg?component=api")).await.unwrap();
    browser.screenshot("status-badge").await;
    let _ = browser.client.clone().close().await;
}

/// Waits for a file named `*.csv` to finish downloading into `dir`.
async fn downloaded_csv(dir: &std::path::Path) -> String {
    let started = Instant::now();
    loop {
        let done = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "csv"));
        if let Some(path) = done {
            return std::fs::read_to_string(path).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no CSV downloaded within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_logs_in_shows_every_panel_filters_and_downloads_the_csv() {
    let app = TestApp::start(Backend::Postgres).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    crate::console::seed(&app, &admin).await;
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::start_with_downloads(Some(downloads.path())).await;

    // Logging in: a console page sends the browser to the form, and back.
    browser.client.goto(&app.url("/admin/health?tenant=acme")).await.unwrap();
    assert!(browser.client.current_url().await.unwrap().path() == "/admin/login");
    browser.screenshot("console-login").await;
    browser
        .client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("cst_wrong-token-0000000000000000000000")
        .await
        .unwrap();
    browser.client.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    let alert = browser.client.wait().for_element(Locator::Css(".alert")).await.unwrap();
    assert!(alert.text().await.unwrap().contains("not a valid token"));
    browser.client.find(Locator::Id("token")).await.unwrap().send_keys(&admin).await.unwrap();
    browser.client.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("/admin/health").await;
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "custos_session").expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert!(!session.value().is_empty());

    // Every panel, problems first, in words as well as colour.
    for panel in ["connectors", "siem", "workflow", "ingestion", "rules"] {
        assert_eq!(browser.count(&format!("section#{panel}")).await, 1, "{panel}");
    }
    let first_connector = browser.text("#connectors tbody tr:first-child").await;
    assert!(first_connector.contains("crowdstrike") && first_connector.contains("overdue"), "{first_connector}");
    assert!(first_connector.contains("50.00 %") && first_connector.contains("HTTP 503"), "{first_connector}");
    assert_eq!(browser.count("#connectors svg.spark").await, 2);
    assert!(browser.text("#workflow").await.contains("HTTP 401 from Jira"));
    assert!(browser.text("#rules").await.contains("gcp.public_bucket"));
    assert!(browser.text("#rules").await.contains("legacy.dormant_rule"));
    assert!(browser.fits_width().await);
    browser.screenshot("console-health").await;

    // Dead letters, one click away.
    browser.client.find(Locator::Css("#workflow a[href*='dead_lettered']")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("/admin/health/deliveries").await;
    assert!(browser.text("table").await.contains("finding-3"));
    browser.screenshot("console-dead-letters").await;

    // The audit log: filter, drill down, download the filter as CSV.
    browser.client.goto(&app.url("/admin/audit/rules?tenant=acme")).await.unwrap();
    assert_eq!(browser.count("table.runs tbody tr").await, 21);
    browser.client.find(Locator::Css("input[name=rule_key]")).await.unwrap().send_keys("aws.root_login").await.unwrap();
    browser.client.find(Locator::Css("select[name=status] option[value=failed]")).await.unwrap().click().await.unwrap();
    browser.client.find(Locator::Css(".filters button")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("status=failed").await;
    assert_eq!(browser.count("table.runs tbody tr").await, 4);
    browser.screenshot("console-audit").await;
    browser.client.find(Locator::Css("a.export[href*='.csv']")).await.unwrap().click().await.unwrap();
    let csv = downloaded_csv(downloads.path()).await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows.iter().all(|r| r.iter().any(|cell| cell == "aws.root_login") && r.iter().any(|cell| cell == "failed"))
    );
    browser.client.find(Locator::Css("table.runs tbody tr:first-child a")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("/admin/audit/rules/run-").await;
    assert!(browser.text("body").await.contains("203.0.113.9"), "the trigger event");
    browser.screenshot("console-run").await;

    // On a phone: the pages reflow; wide tables scroll inside their own box.
    browser.client.set_window_size(390, 1400).await.unwrap();
    browser.client.goto(&app.url("/admin/health?tenant=acme")).await.unwrap();
    browser.screenshot("console-health-phone").await;
    assert!(browser.fits_width().await, "the page itself never scrolls sideways");

    // Logging out ends the session.
    browser.client.find(Locator::Css("form[action='/admin/logout'] button")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("/admin/login").await;
    browser.client.goto(&app.url("/admin/health?tenant=acme")).await.unwrap();
    assert_eq!(browser.client.current_url().await.unwrap().path(), "/admin/login");
    let _ = browser.client.clone().close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_filters_follows_a_trace_and_proves_an_event() {
    let app = crate::ledger::app(Backend::Sqlite).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    crate::console::seed(&app, &admin).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let events: Vec<serde_json::Value> = (0..6)
        .map(|n| {
            json!({"event_id": format!("pol-{n}"), "ts": hours_ago(f64::from(n) + 0.5),
                   "kind": if n % 3 == 0 { "platform.job.failed" } else { "platform.policy.changed" },
                   "actor": "alice@acme.example", "resource_type": "policy", "resource_id": format!("p-{}", n % 2),
                   "trace_id": if n < 2 { Some(trace) } else { None },
                   "details": {"version": n, "change": "threshold raised"}})
        })
        .collect();
    let response = app.post(&admin, "/v1/tenants/acme/timeline/events", NDJSON, ndjson(&events)).await;
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());

    let browser = Browser::start().await;
    browser.client.goto(&app.url("/admin/timeline?tenant=acme")).await.unwrap();
    browser.client.find(Locator::Id("token")).await.unwrap().send_keys(&admin).await.unwrap();
    browser.client.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("/admin/timeline").await;
    browser.screenshot("console-timeline").await;
    // The platform's six events, and what custos recorded from the seeded records: the
    // two failed syncs and the failed rule runs.
    let all = browser.count("table.events tbody tr").await;
    let failed_runs = browser.text("table.events").await.matches("custos.rule_run.failed").count();
    assert_eq!(all, 6 + 2 + failed_runs, "{}", browser.text("table.events").await);
    assert!(browser.text("table.events").await.contains("custos.connector_sync.failed"));

    // "All policy changes", one click.
    browser.client.find(Locator::LinkText("Policy changes")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("kind=").await;
    assert_eq!(browser.count("table.events tbody tr").await, 4);
    // "Every failure", one click.
    browser.client.find(Locator::LinkText("Failures")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("failed").await;
    assert_eq!(browser.count("table.events tbody tr").await, 4 + failed_runs, "job failures, failed syncs and runs");

    // Everything in one trace, from a row's trace link.
    browser.client.goto(&app.url("/admin/timeline?tenant=acme&kind=platform.policy.changed")).await.unwrap();
    browser.client.find(Locator::Css("a[title='everything in this trace']")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("trace_id=").await;
    assert_eq!(browser.count("table.events tbody tr").await, 2);

    // An event's page proves it: the inclusion proof checked against a signed checkpoint.
    browser.client.find(Locator::Css("table.events tbody tr:first-child a")).await.unwrap().click().await.unwrap();
    browser.wait_for_url("/admin/timeline/pol-").await;
    let verdict = browser.text(".verified").await;
    assert!(verdict.starts_with("✓ Leaf") && verdict.contains("signed by key ed25519:"), "{verdict}");
    assert!(browser.text("pre").await.starts_with("custos.local/tenants/acme/timeline\n"));
    browser.screenshot("console-timeline-event").await;

    // A bad filter says which field.
    browser.client.goto(&app.url("/admin/timeline?tenant=acme&kind=*.*")).await.unwrap();
    assert!(browser.text("body").await.contains("kind"), "the error names the field");

    browser.client.set_window_size(390, 1400).await.unwrap();
    browser.client.goto(&app.url("/admin/timeline?tenant=acme")).await.unwrap();
    assert!(browser.fits_width().await, "the page itself never scrolls sideways");
    browser.screenshot("console-timeline-phone").await;
    let _ = browser.client.clone().close().await;
}
