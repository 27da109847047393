//! `custos bench`: speed figures, each next to a baseline measured in the same run on
//! the same machine, because absolute numbers on shared machines mean little.
//!
//! - `ingest`: rule runs streamed as NDJSON over loopback HTTP into an in-process
//!   server, against the same rows inserted directly into the same backend in one
//!   transaction with a prepared statement; the process's peak RSS; single-record POST
//!   latency against an unloaded `GET /health/liveness`.
//! - `query`: a filtered rule-run query (one tenant, one rule key, one day) over a
//!   large table, against the same unloaded request.
//! - `pings`: scheduled-job pings from many connections at once, against unloaded
//!   `GET /health/liveness` requests at the same concurrency; then checks that every
//!   ping was stored.
//! - `health`: `GET /health` while rule runs are ingested at full speed, against the
//!   same request unloaded.
//! - `console`: `/admin/health` over a large tenant (500 connectors, 2,000 rules, 10
//!   million rule runs), against an unloaded `GET /health/liveness`.
//! - `timeline`: see [`super::bench_timeline`].
//! - `evidence`: see [`super::bench_evidence`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use custos_model::records::{RuleRun, RuleRunStatus, ValidationContext};
use custos_model::{BodyFormat, TenantId, Timestamp, token};
use custos_server::{AppState, ServerConfig};
use custos_store::{BaselineBatch, PostgresStore, SqliteStore, Store, StoreResult, Tenant, TokenRecord};
use secrecy::ExposeSecret;

use crate::cli::{
    BenchBackend, BenchCommand, BenchConsoleArgs, BenchHealthArgs, BenchIngestArgs, BenchPingsArgs, BenchQueryArgs,
    GlobalArgs,
};

static TRACE_RECEIVER: std::sync::Mutex<Option<std::net::TcpListener>> = std::sync::Mutex::new(None);

/// Hands over the port `bench ingest --tracing` exports to (bound before logging
/// starts, since the exporter is configured then).
pub fn set_trace_receiver(listener: std::net::TcpListener) {
    *TRACE_RECEIVER.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listener);
}

pub async fn run(global: &GlobalArgs, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(global, &args).await,
        BenchCommand::Query(args) => query(global, &args).await,
        BenchCommand::Pings(args) => pings(global, &args).await,
        BenchCommand::Health(args) => health(global, &args).await,
        BenchCommand::Console(args) => console(global, &args).await,
        BenchCommand::Timeline(args) => super::bench_timeline::run(&args).await,
        BenchCommand::Evidence(args) => super::bench_evidence::run(&args).await,
    }
}

/// The store under test, with its concrete type for the raw baseline insert.
enum Bench {
    /// The temp dir holding the database lives as long as the bench.
    Sqlite(SqliteStore, #[allow(dead_code)] tempfile::TempDir),
    Postgres(Box<PostgresStore>),
}

impl Bench {
    async fn open(global: &GlobalArgs, backend: BenchBackend) -> anyhow::Result<Self> {
        let bench = match backend {
            BenchBackend::Sqlite => {
                let dir = tempfile::Builder::new().prefix("custos-bench").tempdir().context("creating a temp dir")?;
                let store = SqliteStore::open(&dir.path().join("custos.db")).await?;
                Bench::Sqlite(store, dir)
            }
            BenchBackend::Postgres => {
                let url = global
                    .database_url
                    .as_ref()
                    .context("--backend postgres needs --database-url or CUSTOS_DATABASE_URL")?;
                Bench::Postgres(Box::new(PostgresStore::connect(url.expose_secret()).await?))
            }
        };
        bench.store().migrate().await.context("migrating the bench store")?;
        Ok(bench)
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Bench::Sqlite(store, _) => Arc::new(store.clone()),
            Bench::Postgres(store) => Arc::new(PostgresStore::clone(store)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Bench::Sqlite(..) => "sqlite",
            Bench::Postgres(_) => "postgres",
        }
    }

    async fn baseline_insert(&self, tenant: &TenantId, batch: BaselineBatch) -> StoreResult<usize> {
        match self {
            Bench::Sqlite(store, _) => store.baseline_insert_rule_runs(tenant, batch, Timestamp::now()).await,
            Bench::Postgres(store) => store.baseline_insert_rule_runs(tenant, batch, Timestamp::now()).await,
        }
    }
}

/// A tenant unique to this run, so runs against a shared PostgreSQL do not collide.
async fn bench_tenant(store: &dyn Store, prefix: &str) -> anyhow::Result<TenantId> {
    let id =
        TenantId::parse(&format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])).expect("valid id");
    store
        .create_tenant(&Tenant { id: id.clone(), name: None, retention_days: 1, created_at: Timestamp::now() })
        .await?;
    Ok(id)
}

async fn bench_token(store: &dyn Store, tenant: &TenantId) -> anyhow::Result<String> {
    let generated = token::generate();
    store
        .create_token(&TokenRecord {
            id: generated.id,
            name: "bench".into(),
            secret_hash: generated.secret_hash,
            scopes: vec![format!("admin#tenant/{tenant}").parse().expect("valid scope")],
            created_at: Timestamp::now(),
            expires_at: None,
            revoked_at: None,
        })
        .await?;
    Ok(generated.secret)
}

/// Starts the real server on a loopback port; it stops when the sender drops.
async fn start_server(store: Arc<dyn Store>) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store, ServerConfig::default());
    tokio::spawn(custos_server::serve(listener, state, async {
        let _ = rx.await;
    }));
    Ok((base, tx))
}

const BASE_MICROS: i64 = 1_795_000_000_000_000; // 2026-11-18

/// The NDJSON line of rule run `index` of a run tagged `run`.
fn rule_run_line(run: &str, index: usize, out: &mut String) {
    use std::fmt::Write;
    let started = Timestamp::from_micros(BASE_MICROS + index as i64 * 1_000);
    let finished = started.saturating_add_micros(42_000);
    let _ = writeln!(
        out,
        r#"{{"id":"{run}-{index}","rule_key":"bench.rule_{}","rule_version":"7","integration_id":"connector-{}","status":"{}","events_evaluated":{},"findings_created":{},"findings_reopened":0,"findings_resolved":{},"duration_ms":42,"started_at":"{started}","finished_at":"{finished}","trace_id":"{:032x}"}}"#,
        index % 500,
        index % 40,
        if index.is_multiple_of(50) { "failed" } else { "succeeded" },
        index % 10_000,
        index % 3,
        index % 2,
        (index as u128 + 1) * 0x9e37_79b9_7f4a_7c15,
    );
}

/// The NDJSON of rule runs `range` of a run tagged `run`.
fn rule_run_lines(run: &str, range: std::ops::Range<usize>) -> String {
    let mut body = String::with_capacity(range.len() * 330);
    for i in range {
        rule_run_line(run, i, &mut body);
    }
    body
}

/// POSTs `body` as `content_type`; an answer other than `expected` (any success when
/// `None`) is an error carrying the response.
async fn post_records(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    content_type: &str,
    body: String,
    expected: Option<u16>,
) -> anyhow::Result<()> {
    let response = client.post(url).bearer_auth(token).header("content-type", content_type).body(body).send().await?;
    let status = response.status();
    let text = response.text().await?;
    let ok = expected.map_or(status.is_success(), |code| status.as_u16() == code);
    anyhow::ensure!(ok, "POST {url} answered {status}: {text}");
    Ok(())
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time this process has used (user and system, every thread; zero without
/// /proc). Its difference over a load, per request, is the cost of a request with the
/// client's share included: steadier than a rate on a shared machine, where a
/// neighbour's load slows the clock but not the work.
fn process_cpu() -> Duration {
    Duration::from_secs_f64(custos_telemetry::metrics::process_cpu_seconds().unwrap_or(0.0))
}

/// Resident set size and its peak, in MiB, from /proc (Linux).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Times `samples` sequential requests made by `request`.
async fn latencies<F, Fut>(samples: usize, mut request: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        request(i).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

async fn liveness_latencies(client: &reqwest::Client, base: &str, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let url = format!("{base}/health/liveness");
    latencies(samples, |_| {
        let request = client.get(&url);
        async move {
            let response = request.send().await?;
            anyhow::ensure!(response.status().is_success(), "liveness answered {}", response.status());
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}

async fn ingest(global: &GlobalArgs, args: &BenchIngestArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 || args.records == 0 {
        bail!("--records, --batch and --concurrency must be positive");
    }
    let bench = Bench::open(global, args.backend).await?;
    let store = bench.store();
    let tenant = bench_tenant(&*store, "bench").await?;
    let token = bench_token(&*store, &tenant).await?;
    let (base, _stop) = start_server(store.clone()).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    println!(
        "custos bench ingest: {} backend, {} rule runs in NDJSON batches of {}, {} connections",
        bench.name(),
        args.records,
        args.batch,
        args.concurrency
    );

    // Peak RSS is sampled while the end-to-end run streams.
    let peak_rss = Arc::new(std::sync::Mutex::new(0.0f64));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                let (rss, _) = rss_mib();
                {
                    let mut p = peak.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    *p = p.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let batches = args.records.div_ceil(args.batch);
    let next = Arc::new(AtomicUsize::new(0));
    let run_tag = format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let url = format!("{base}/v1/tenants/{tenant}/rule-runs");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, token, next, run_tag) =
            (client.clone(), url.clone(), token.clone(), next.clone(), run_tag.clone());
        let (records, batch) = (args.records, args.batch);
        workers.push(tokio::spawn(async move {
            let mut sent = 0usize;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<usize, anyhow::Error>(sent);
                }
                let end = ((b + 1) * batch).min(records);
                let body = rule_run_lines(&run_tag, b * batch..end);
                post_records(&client, &url, &token, "application/x-ndjson", body, None).await?;
                sent += end - b * batch;
            }
        }));
    }
    let mut sent = 0;
    for worker in workers {
        sent += worker.await??;
    }
    let e2e = started.elapsed();
    sampler.abort();
    let peak = *peak_rss.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let e2e_rate = sent as f64 / e2e.as_secs_f64();

    // Export: every row just ingested, streamed back as NDJSON and counted as it
    // arrives; the RSS growth while it streams shows whether memory stays flat.
    let export_url = format!("{url}?format=ndjson");
    let (rss_before_export, _) = rss_mib();
    let export_peak = Arc::new(std::sync::Mutex::new(rss_before_export));
    let export_sampler = {
        let peak = export_peak.clone();
        tokio::spawn(async move {
            loop {
                let (rss, _) = rss_mib();
                {
                    let mut p = peak.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    *p = p.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let mut response = client.get(&export_url).bearer_auth(&token).send().await?;
    anyhow::ensure!(response.status().is_success(), "export answered {}", response.status());
    let mut exported = 0usize;
    while let Some(chunk) = response.chunk().await? {
        exported += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    let export = started.elapsed();
    export_sampler.abort();
    let export_growth = *export_peak.lock().unwrap_or_else(std::sync::PoisonError::into_inner) - rss_before_export;
    anyhow::ensure!(exported == sent, "exported {exported} rows, expected {sent}");

    // Baseline: the same rows (another tag, another tenant), parsed ahead of time, then
    // one transaction of prepared inserts. Capped so it fits in memory.
    let baseline_rows = args.records.min(1_000_000);
    let baseline_tenant = bench_tenant(&*store, "baseline").await?;
    let mut text = String::with_capacity(baseline_rows * 330);
    for i in 0..baseline_rows {
        rule_run_line("base", i, &mut text);
    }
    let ctx = ValidationContext::new(Timestamp::now());
    let runs: Vec<RuleRun> = custos_model::parse_records(text.as_bytes(), BodyFormat::Ndjson, &ctx, usize::MAX)?;
    drop(text);
    let batch = BaselineBatch::prepare(&runs);
    drop(runs);
    let started = Instant::now();
    bench.baseline_insert(&baseline_tenant, batch).await?;
    let baseline = started.elapsed();
    let baseline_rate = baseline_rows as f64 / baseline.as_secs_f64();

    // Latency: single-record POSTs one at a time, against unloaded liveness requests.
    let post_url = url.clone();
    let post = latencies(args.latency_samples, |i| {
        let mut body = String::new();
        rule_run_line("single", i, &mut body);
        let request = client.post(&post_url).bearer_auth(&token).header("content-type", "application/json").body(body);
        async move {
            let response = request.send().await?;
            anyhow::ensure!(response.status() == 201, "single POST answered {}", response.status());
            response.bytes().await?;
            Ok(())
        }
    })
    .await?;
    let live = liveness_latencies(&client, &base, args.latency_samples).await?;

    println!("  end to end (HTTP, NDJSON)      {:>12.0} records/s  ({sent} in {:.2} s)", e2e_rate, e2e.as_secs_f64());
    println!(
        "  baseline (direct insert)       {:>12.0} records/s  ({baseline_rows} in {:.2} s, one transaction, prepared statement)",
        baseline_rate,
        baseline.as_secs_f64()
    );
    println!("  ratio end to end / baseline    {:>12.2}", e2e_rate / baseline_rate);
    println!("  peak RSS during end to end     {:>12.0} MiB", peak);
    println!(
        "  NDJSON export of every row     {:>12.0} rows/s     ({exported} in {:.2} s, RSS grew {:.0} MiB while streaming)",
        exported as f64 / export.as_secs_f64(),
        export.as_secs_f64(),
        export_growth.max(0.0)
    );
    println!(
        "  single-record POST             p50 {:.3} ms  p99 {:.3} ms  ({} samples)",
        ms(percentile(&post, 50.0)),
        ms(percentile(&post, 99.0)),
        post.len()
    );
    println!(
        "  unloaded GET /health/liveness  p50 {:.3} ms  p99 {:.3} ms",
        ms(percentile(&live, 50.0)),
        ms(percentile(&live, 99.0))
    );
    println!("  ratio POST p99 / liveness p99  {:>12.2}", ms(percentile(&post, 99.0)) / ms(percentile(&live, 99.0)));
    tracing::info!(
        backend = bench.name(),
        records = sent,
        e2e_records_per_second = e2e_rate,
        baseline_records_per_second = baseline_rate,
        peak_rss_mib = peak,
        post_p99_ms = ms(percentile(&post, 99.0)),
        "bench ingest finished"
    );
    if args.tracing {
        tracing_overhead(&client, &url, &token, args).await?;
    }
    Ok(())
}

/// A live OTLP/HTTP trace receiver: accepts each export and answers success (an empty
/// `ExportTraceServiceResponse` is an empty protobuf message).
async fn start_trace_receiver() -> anyhow::Result<()> {
    let listener = TRACE_RECEIVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .context("--tracing: the trace receiver's port was not bound at startup")?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let status = if body.is_empty() { axum::http::StatusCode::BAD_REQUEST } else { axum::http::StatusCode::OK };
            (status, [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")])
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

/// The same load with trace export off and on, in `--tracing-rounds` rounds; each round
/// runs both modes back to back (in alternating order, so drift on a shared machine
/// hits both alike) and yields one on/off ratio. The median ratio is the figure:
/// NDJSON batches, then single-record POSTs over several connections (the worst case:
/// one request span per record). A traced window ends only once its spans are
/// exported (a flush), so it pays for all of its export; and a run that dropped any
/// span fails, since a dropped span costs nothing to export.
async fn tracing_overhead(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    args: &BenchIngestArgs,
) -> anyhow::Result<()> {
    use custos_telemetry::otel::{SPAN_STATS, set_export_enabled};
    start_trace_receiver().await?;
    let batch_records = 50_000usize.min(args.records.max(args.batch));
    let connections = (args.concurrency * 2).max(2);
    let dropped_before = SPAN_STATS.dropped.load(Ordering::Relaxed);
    let exported_before = SPAN_STATS.exported.load(Ordering::Relaxed);
    let failed_before = SPAN_STATS.export_failed.load(Ordering::Relaxed);
    // One window: `load`, then (traced) the export of its spans; its rate per second
    // and its CPU time per unit of work.
    async fn window<F: std::future::Future<Output = anyhow::Result<()>>>(
        on: bool,
        units: usize,
        load: F,
    ) -> anyhow::Result<Measured> {
        let (started, cpu) = (Instant::now(), process_cpu());
        load.await?;
        if on {
            tokio::task::spawn_blocking(custos_telemetry::otel::flush_pending_spans).await?;
        }
        let (elapsed, cpu) = (started.elapsed(), process_cpu().saturating_sub(cpu));
        Ok(Measured { rate: units as f64 / elapsed.as_secs_f64(), cpu_per_unit: cpu / units.max(1) as u32 })
    }
    // measured[phase][round] = [off, on]
    let mut measured: [Vec<[Measured; 2]>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.tracing_rounds.max(1) {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let mut this_round = [[Measured::default(); 2]; 2];
        for on in order {
            set_export_enabled(on);
            let mode = usize::from(on);
            let tag = format!("tr{round}{mode}{}", &uuid::Uuid::new_v4().simple().to_string()[..4]);
            this_round[0][mode] = window(on, batch_records, async {
                let mut sent = 0;
                while sent < batch_records {
                    let end = (sent + args.batch).min(batch_records);
                    let lines = rule_run_lines(&tag, sent..end);
                    post_records(client, url, token, "application/x-ndjson", lines, None).await?;
                    sent = end;
                }
                Ok(())
            })
            .await?;

            let requests = args.tracing_requests;
            this_round[1][mode] = window(on, requests, async {
                let next = Arc::new(AtomicUsize::new(0));
                let mut workers = Vec::new();
                for _ in 0..connections {
                    let (client, url, token, next, tag) =
                        (client.clone(), url.to_owned(), token.to_owned(), next.clone(), format!("{tag}p"));
                    workers.push(tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= requests {
                                return Ok::<(), anyhow::Error>(());
                            }
                            let body = rule_run_lines(&tag, i..i + 1);
                            post_records(&client, &url, &token, "application/json", body, Some(201)).await?;
                        }
                    }));
                }
                for worker in workers {
                    worker.await??;
                }
                Ok(())
            })
            .await?;
        }
        for (phase, pair) in this_round.into_iter().enumerate() {
            measured[phase].push(pair);
        }
    }
    set_export_enabled(true);
    let median = |mut values: Vec<f64>| -> f64 {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
    };
    println!(
        "  tracing overhead (every span sampled, OTLP/HTTP to a live receiver; {} rounds of off and on, median)",
        args.tracing_rounds.max(1)
    );
    for (phase, (name, unit)) in
        [("NDJSON batches", "records/s"), ("single-record POSTs", "requests/s")].into_iter().enumerate()
    {
        let rounds = &measured[phase];
        let off = median(rounds.iter().map(|r| r[0].rate).collect());
        let on = median(rounds.iter().map(|r| r[1].rate).collect());
        let losses: Vec<f64> = rounds.iter().map(|r| (1.0 - r[1].rate / r[0].rate) * 100.0).collect();
        let (low, high) = losses.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        let loss = median(losses);
        let cpu_off = median(rounds.iter().map(|r| r[0].cpu_per_unit.as_secs_f64() * 1e6).collect());
        let cpu_on = median(rounds.iter().map(|r| r[1].cpu_per_unit.as_secs_f64() * 1e6).collect());
        let cpu_extra = median(
            rounds
                .iter()
                .map(|r| (r[1].cpu_per_unit.as_secs_f64() / r[0].cpu_per_unit.as_secs_f64() - 1.0) * 100.0)
                .collect(),
        );
        println!(
            "    {name:<20} off {off:>10.0} {unit}   on {on:>10.0} {unit}   loss {loss:>5.1} %  (rounds {low:.1} to {high:.1} %)"
        );
        println!(
            "    {:<20} CPU per {} off {cpu_off:.1} µs   on {cpu_on:.1} µs   extra {cpu_extra:>5.1} %",
            "",
            if phase == 0 { "record" } else { "request" },
        );
        tracing::info!(
            phase = name,
            off_per_second = off,
            on_per_second = on,
            loss_percent = loss,
            cpu_extra_percent = cpu_extra,
            "tracing overhead"
        );
    }
    let dropped = SPAN_STATS.dropped.load(Ordering::Relaxed) - dropped_before;
    println!(
        "    spans exported {}, dropped {dropped}, failed {}",
        SPAN_STATS.exported.load(Ordering::Relaxed) - exported_before,
        SPAN_STATS.export_failed.load(Ordering::Relaxed) - failed_before
    );
    if dropped > 0 {
        bail!(
            "{dropped} spans were dropped (the export queue was full), so the traced figures leave out their export \
             and understate tracing's cost; rerun with fewer --tracing-requests"
        );
    }
    Ok(())
}

/// One measured window of `bench ingest --tracing`.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    rate: f64,
    cpu_per_unit: Duration,
}

async fn query(global: &GlobalArgs, args: &BenchQueryArgs) -> anyhow::Result<()> {
    if args.rows == 0 || args.rule_keys == 0 || args.days == 0 || args.queries == 0 {
        bail!("--rows, --rule-keys, --days and --queries must be positive");
    }
    let bench = Bench::open(global, args.backend).await?;
    let store = bench.store();
    let tenant = bench_tenant(&*store, "query").await?;
    let token = bench_token(&*store, &tenant).await?;
    println!(
        "custos bench query: {} backend, {} rule runs over {} days and {} rule keys",
        bench.name(),
        args.rows,
        args.days,
        args.rule_keys
    );

    let span_micros = i64::from(args.days) * 86_400_000_000;
    let step = (span_micros / args.rows as i64).max(1);
    let fill_started = Instant::now();
    let chunk = 250_000;
    let mut done = 0;
    while done < args.rows {
        let end = (done + chunk).min(args.rows);
        let runs: Vec<RuleRun> = (done..end)
            .map(|i| {
                let started = Timestamp::from_micros(BASE_MICROS + i as i64 * step);
                RuleRun {
                    id: format!("q{i}"),
                    rule_key: format!("rule.{}", (i * 7919) % args.rule_keys),
                    rule_version: Some("1".into()),
                    integration_id: Some(format!("connector-{}", i % 40)),
                    status: if i.is_multiple_of(50) { RuleRunStatus::Failed } else { RuleRunStatus::Succeeded },
                    events_evaluated: (i % 10_000) as i64,
                    findings_created: (i % 3) as i64,
                    findings_reopened: 0,
                    findings_resolved: 0,
                    duration_ms: Some(40),
                    error_message: None,
                    started_at: started,
                    finished_at: Some(started.saturating_add_micros(40_000)),
                    trace_id: None,
                    context: None,
                }
            })
            .collect();
        bench.baseline_insert(&tenant, BaselineBatch::prepare(&runs)).await?;
        done = end;
        eprint!("\r  stored {done}/{} rows", args.rows);
    }
    eprintln!();
    println!(
        "  fill                           {:.1} s ({:.0} rows/s)",
        fill_started.elapsed().as_secs_f64(),
        args.rows as f64 / fill_started.elapsed().as_secs_f64()
    );

    let (base, _stop) = start_server(store.clone()).await?;
    let client = reqwest::Client::new();
    // Warm the pages a real deployment would have cached.
    liveness_latencies(&client, &base, 50).await?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next_random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let selections: Vec<(usize, Timestamp)> = (0..args.queries)
        .map(|_| {
            let key = next_random() as usize % args.rule_keys;
            let day = next_random() % u64::from(args.days);
            (key, Timestamp::from_micros(BASE_MICROS + day as i64 * 86_400_000_000))
        })
        .collect();
    let day = |from: Timestamp| from.saturating_add_micros(86_400_000_000);
    let requests: Vec<String> = selections
        .iter()
        .map(|(key, from)| {
            format!("{base}/v1/tenants/{tenant}/rule-runs?rule_key=rule.{key}&from={from}&to={}&limit=100", day(*from))
        })
        .collect();
    // The same selections as direct store calls: the database's share of the time.
    let direct = latencies(selections.len(), |i| {
        let (key, from) = selections[i];
        let query = custos_store::RecordQuery {
            filters: vec![("rule_key".into(), format!("rule.{key}"))],
            from: Some(from),
            to: Some(day(from)),
            after: None,
            limit: 100,
        };
        let (store, tenant) = (store.clone(), tenant.clone());
        async move {
            store.rule_runs_page(&tenant, &query).await?;
            Ok(())
        }
    })
    .await?;
    let returned = Arc::new(AtomicUsize::new(0));
    let times = latencies(requests.len(), |i| {
        let request = client.get(&requests[i]).bearer_auth(&token);
        let returned = returned.clone();
        async move {
            let response = request.send().await?;
            anyhow::ensure!(response.status().is_success(), "query answered {}", response.status());
            let page: serde_json::Value = response.json().await?;
            returned.fetch_add(page["items"].as_array().map_or(0, Vec::len), Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    let returned = returned.load(Ordering::Relaxed);
    let live = liveness_latencies(&client, &base, args.queries).await?;
    println!(
        "  same queries, direct store call p50 {:.2} ms  p95 {:.2} ms",
        ms(percentile(&direct, 50.0)),
        ms(percentile(&direct, 95.0))
    );
    println!(
        "  filtered query (HTTP)          p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  ({} queries, {:.0} rows each on average)",
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 95.0)),
        ms(percentile(&times, 99.0)),
        times.len(),
        returned as f64 / times.len() as f64
    );
    println!(
        "  unloaded GET /health/liveness  p50 {:.2} ms  p95 {:.2} ms",
        ms(percentile(&live, 50.0)),
        ms(percentile(&live, 95.0))
    );
    println!("  ratio query p95 / liveness p95 {:>8.1}", ms(percentile(&times, 95.0)) / ms(percentile(&live, 95.0)));
    tracing::info!(
        backend = bench.name(),
        rows = args.rows,
        query_p95_ms = ms(percentile(&times, 95.0)),
        "bench query finished"
    );
    Ok(())
}

/// Sends `total` requests from `concurrency` connections, each request made by
/// `request(i)`; returns the elapsed time and every request's latency, sorted.
async fn load<F, Fut>(total: usize, concurrency: usize, request: F) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (request, next) = (request.clone(), next.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(times);
                    }
                    let sent = Instant::now();
                    request(i).await?;
                    times.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut times = Vec::with_capacity(total);
    for worker in workers {
        times.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    times.sort();
    Ok((elapsed, times))
}

async fn pings(global: &GlobalArgs, args: &BenchPingsArgs) -> anyhow::Result<()> {
    if args.pings == 0 || args.jobs == 0 || args.concurrency == 0 {
        bail!("--pings, --jobs and --concurrency must be positive");
    }
    let bench = Bench::open(global, args.backend).await?;
    let store = bench.store();
    let tenant = bench_tenant(&*store, "pings").await?;
    let token = bench_token(&*store, &tenant).await?;
    for j in 0..args.jobs {
        let input = custos_model::ComponentInput {
            kind: custos_model::ComponentKind::ScheduledJob,
            name: None,
            provider: None,
            freshness: None,
            schedule: Some(custos_model::jobs::JobSchedule {
                cron: None,
                timezone: None,
                period_seconds: Some(60),
                grace_seconds: Some(60),
            }),
        };
        let job = input.validate(&format!("job-{j}"), Timestamp::now()).map_err(|e| anyhow::anyhow!(e.message))?;
        store.put_component(&tenant, &job).await?;
    }
    // The store's share: the same pings applied directly, in batches of 64, on a
    // tenant of their own.
    let direct_tenant = bench_tenant(&*store, "pings-direct").await?;
    for j in 0..args.jobs {
        let mut job = store.component(&tenant, &format!("job-{j}")).await?.context("a bench job")?;
        job.id = format!("job-{j}");
        store.put_component(&direct_tenant, &job).await?;
    }
    let direct_pings = (args.pings / 4).max(1000);
    let direct_started = Instant::now();
    let ping = custos_model::jobs::PingInput::new(custos_model::jobs::PingKind::Success, None, Some(0), None, None)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    for chunk in (0..direct_pings).collect::<Vec<_>>().chunks(64) {
        let events = chunk
            .iter()
            .map(|i| custos_store::JobEventRequest {
                job_id: format!("job-{}", i % args.jobs),
                event: custos_model::jobs::JobEvent::Ping(ping.clone()),
                received_at: Timestamp::now(),
                trace_id: None,
            })
            .collect();
        store.apply_job_events(&direct_tenant, events).await?;
    }
    let direct_rate = direct_pings as f64 / direct_started.elapsed().as_secs_f64();

    let (base, _stop) = start_server(store.clone()).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    println!(
        "custos bench pings: {} backend, {} pings over {} jobs, {} connections",
        bench.name(),
        args.pings,
        args.jobs,
        args.concurrency
    );

    // Baseline: the cheapest request there is, at the same concurrency.
    let liveness = format!("{base}/health/liveness");
    let baseline_requests = (args.pings / 2).max(1000);
    let cpu_before = process_cpu();
    let (baseline_took, baseline_times) = load(baseline_requests, args.concurrency, {
        let (client, url) = (client.clone(), liveness.clone());
        move |_| {
            let request = client.get(&url);
            async move {
                let response = request.send().await?;
                anyhow::ensure!(response.status().is_success(), "liveness answered {}", response.status());
                response.bytes().await?;
                Ok(())
            }
        }
    })
    .await?;
    let baseline_rate = baseline_requests as f64 / baseline_took.as_secs_f64();
    let baseline_cpu = (process_cpu() - cpu_before).as_secs_f64() * 1e6 / baseline_requests as f64;

    let urls: Arc<Vec<String>> = Arc::new(
        (0..args.jobs).map(|j| format!("{base}/v1/tenants/{tenant}/jobs/job-{j}/success?exit_code=0")).collect(),
    );
    let cpu_before = process_cpu();
    let (took, times) = load(args.pings, args.concurrency, {
        let (client, urls, token) = (client.clone(), urls.clone(), token.clone());
        move |i| {
            let request = client.post(&urls[i % urls.len()]).bearer_auth(&token);
            async move {
                let response = request.send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                anyhow::ensure!(status.is_success(), "ping answered {status}: {}", String::from_utf8_lossy(&body));
                Ok(())
            }
        }
    })
    .await?;
    let rate = args.pings as f64 / took.as_secs_f64();
    let ping_cpu = (process_cpu() - cpu_before).as_secs_f64() * 1e6 / args.pings as f64;

    // Every answered ping is stored: the jobs' counters add up.
    let stored: i64 = store.jobs(&tenant).await?.iter().map(|j| j.state.pings_total).sum();
    anyhow::ensure!(stored == args.pings as i64, "{} pings answered but {stored} stored", args.pings);

    println!(
        "  baseline: GET /health/liveness    {baseline_rate:>9.0} requests/s   p50 {:.2} ms   p99 {:.2} ms",
        ms(percentile(&baseline_times, 50.0)),
        ms(percentile(&baseline_times, 99.0))
    );
    println!(
        "  pings: POST …/jobs/{{job}}/success {rate:>9.0} pings/s      p50 {:.2} ms   p99 {:.2} ms",
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 99.0))
    );
    println!("  ratio to baseline                {:>9.2}", rate / baseline_rate);
    println!(
        "  CPU per request (both ends)      {ping_cpu:>9.1} µs per ping, {baseline_cpu:.1} µs per liveness request ({:.1}×)",
        ping_cpu / baseline_cpu
    );
    println!(
        "  store alone: batches of 64       {direct_rate:>9.0} pings/s      (HTTP path at {:.2} of it)",
        rate / direct_rate
    );
    println!("  stored                           {stored} pings (all answered pings)");
    Ok(())
}

/// `GET /health` answered `samples` times one after another, `interval` apart; returns
/// the sorted latencies and how many answers were not 200.
async fn health_latencies(
    client: &reqwest::Client,
    url: &str,
    until: impl Fn(usize) -> bool,
    interval: Duration,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let (mut times, mut not_ok) = (Vec::new(), 0);
    let mut i = 0;
    while !until(i) {
        let started = Instant::now();
        let response = client.get(url).send().await?;
        let ok = response.status().as_u16() == 200;
        response.bytes().await?;
        times.push(started.elapsed());
        if !ok {
            not_ok += 1;
        }
        i += 1;
        tokio::time::sleep(interval).await;
    }
    times.sort();
    Ok((times, not_ok))
}

async fn health(global: &GlobalArgs, args: &BenchHealthArgs) -> anyhow::Result<()> {
    if args.seconds == 0 || args.concurrency == 0 || args.batch == 0 {
        bail!("--seconds, --concurrency and --batch must be positive");
    }
    let bench = Bench::open(global, args.backend).await?;
    let store = bench.store();
    let tenant = bench_tenant(&*store, "health").await?;
    let token = bench_token(&*store, &tenant).await?;

    // The server as `serve` runs it: a local object store proved writable by its prober,
    // and the job monitor, so `/health` has every check it has in production.
    let objects_dir = tempfile::Builder::new().prefix("custos-bench-objects").tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState::new(store.clone(), ServerConfig::default())
        .with_objects(custos_store::objects::open(None, objects_dir.path())?);
    custos_server::health::spawn_object_probe(state.clone(), Duration::from_secs(1));
    custos_server::jobs::spawn_monitor(state.clone(), Duration::from_secs(1));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(custos_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency + 1).build()?;
    let health_url = format!("{base}/health");
    let interval = Duration::from_millis(args.interval_ms);
    println!(
        "custos bench health: {} backend, GET /health every {} ms, unloaded then under {} s of ingestion ({} connections, batches of {})",
        bench.name(),
        args.interval_ms,
        args.seconds,
        args.concurrency,
        args.batch
    );

    // Wait for the first object store probe, then the unloaded baseline.
    let ready = Instant::now();
    while client.get(&health_url).send().await?.status() != 200 {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(10), "/health did not pass within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (unloaded, unloaded_failed) = health_latencies(&client, &health_url, |i| i >= 500, interval).await?;

    // Ingestion at full speed for --seconds, /health sampled all along.
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let run_tag = format!("h{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let url = format!("{base}/v1/tenants/{tenant}/rule-runs");
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, token, next, run_tag, batch) =
            (client.clone(), url.clone(), token.clone(), next.clone(), run_tag.clone(), args.batch);
        writers.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while Instant::now() < deadline {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let body = rule_run_lines(&run_tag, b * batch..(b + 1) * batch);
                post_records(&client, &url, &token, "application/x-ndjson", body, None).await?;
                sent += batch;
            }
            Ok::<usize, anyhow::Error>(sent)
        }));
    }
    let (loaded, loaded_failed) =
        health_latencies(&client, &health_url, |_| Instant::now() >= deadline, interval).await?;
    let mut ingested = 0;
    for writer in writers {
        ingested += writer.await??;
    }
    let ingest_rate = ingested as f64 / started.elapsed().as_secs_f64();

    let line = |name: &str, times: &[Duration], failed: usize| {
        println!(
            "  {name:<32} {:>6} requests   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms   not 200: {failed}",
            times.len(),
            ms(percentile(times, 50.0)),
            ms(percentile(times, 99.0)),
            ms(times.last().copied().unwrap_or_default()),
        );
    };
    line("baseline: GET /health, unloaded", &unloaded, unloaded_failed);
    line("GET /health during ingestion", &loaded, loaded_failed);
    println!(
        "  p99 ratio to baseline            {:>6.2}",
        ms(percentile(&loaded, 99.0)) / ms(percentile(&unloaded, 99.0)).max(f64::EPSILON)
    );
    println!("  ingestion meanwhile              {ingest_rate:>9.0} rule runs/s ({ingested} stored)");
    tracing::info!(
        backend = bench.name(),
        health_p99_unloaded_ms = ms(percentile(&unloaded, 99.0)),
        health_p99_loaded_ms = ms(percentile(&loaded, 99.0)),
        ingest_rate,
        "bench health finished"
    );
    Ok(())
}

/// Stores `total` rule runs over `rules` keys and the last 7 days through the ingest
/// path (so the rollups are kept), in batches, printing progress.
async fn seed_rule_runs(
    store: &dyn Store,
    tenant: &TenantId,
    rules: usize,
    total: usize,
    now: i64,
) -> anyhow::Result<()> {
    use custos_model::records::RuleRunStatus;
    const BATCH: usize = 20_000;
    const WEEK_US: i64 = 7 * 86_400_000_000;
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        let n = BATCH.min(total - done);
        let runs: Vec<RuleRun> = (done..done + n)
            .map(|i| {
                // Spread evenly over the week, newest last; one rule in 10 silent for 2 days.
                let mut at = now - WEEK_US + (i as i64 * (WEEK_US / total.max(1) as i64));
                let rule = i % rules;
                if rule % 10 == 9 {
                    at = at.min(now - 2 * 86_400_000_000);
                }
                RuleRun {
                    id: format!("run-{i}"),
                    rule_key: format!("bench.rule_{rule:04}"),
                    rule_version: Some("7".into()),
                    integration_id: Some(format!("connector-{:03}", i % 500)),
                    status: if i % 50 == 0 { RuleRunStatus::Failed } else { RuleRunStatus::Succeeded },
                    events_evaluated: (i % 10_000) as i64,
                    findings_created: (i % 7 == 0) as i64 * (rule % 5) as i64,
                    findings_reopened: 0,
                    findings_resolved: 0,
                    duration_ms: Some(((i * 7919) % 2_000 + rule) as i64),
                    error_message: (i % 50 == 0).then(|| "query timed out".to_owned()),
                    started_at: Timestamp::from_micros(at),
                    finished_at: None,
                    trace_id: None,
                    context: None,
                }
            })
            .collect();
        store.record_rule_runs(tenant, runs, Timestamp::from_micros(now)).await?;
        done += n;
        if done % 1_000_000 < BATCH || done == total {
            eprintln!("  seeded {done} of {total} rule runs ({:.0}/s)", done as f64 / started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

async fn console(global: &GlobalArgs, args: &BenchConsoleArgs) -> anyhow::Result<()> {
    use custos_model::records::{
        ConnectorSync, Delivery, DeliveryStatus, QueueDepth, QueueSnapshot, SyncStatus, SyncTrigger,
    };
    use custos_model::{Component, ComponentKind};
    if args.connectors == 0 || args.rules == 0 || args.samples == 0 {
        bail!("--connectors, --rules and --samples must be positive");
    }
    let bench = Bench::open(global, args.backend).await?;
    let store = bench.store();
    let tenant = bench_tenant(&*store, "console").await?;
    let token = bench_token(&*store, &tenant).await?;
    let now = Timestamp::now();
    let now_us = now.as_micros();
    println!(
        "custos bench console: {} backend, {} connectors, {} rules, {} rule runs",
        bench.name(),
        args.connectors,
        args.rules,
        args.runs
    );
    let component = |id: String, kind: ComponentKind, provider: Option<&str>| Component {
        id,
        kind,
        name: None,
        provider: provider.map(str::to_owned),
        freshness: None,
        schedule: None,
        created_at: now,
        updated_at: now,
    };
    for c in 0..args.connectors {
        let provider = ["okta", "crowdstrike", "azure-ad", "google-workspace", "aws"][c % 5];
        store
            .put_component(&tenant, &component(format!("connector-{c:03}"), ComponentKind::Connector, Some(provider)))
            .await?;
    }
    for d in 0..10 {
        let kind = if d < 5 { ComponentKind::SiemDestination } else { ComponentKind::WorkflowDestination };
        store.put_component(&tenant, &component(format!("destination-{d}"), kind, None)).await?;
    }
    for q in 0..3 {
        store.put_component(&tenant, &component(format!("queue-{q}"), ComponentKind::IngestionQueue, None)).await?;
    }
    // A sync every 15 minutes per connector over the last day.
    let mut syncs = Vec::new();
    for c in 0..args.connectors {
        for s in 0..96i64 {
            let finished = now_us - s * 900_000_000 - (c as i64 * 1_000_000);
            let failed = (c + s as usize).is_multiple_of(23);
            syncs.push(ConnectorSync {
                id: format!("sync-{c}-{s}"),
                integration_id: format!("connector-{c:03}"),
                triggered_by: SyncTrigger::Scheduled,
                status: if failed { SyncStatus::Failed } else { SyncStatus::Succeeded },
                events_ingested: 1000,
                new_assets_observed: 0,
                api_calls_made: 10,
                duration_ms: Some(1_000 + (c as i64 * 37 + s * 11) % 60_000),
                error_message: failed.then(|| "HTTP 503 from the provider".to_owned()),
                started_at: Timestamp::from_micros(finished - 30_000_000),
                finished_at: Timestamp::from_micros(finished),
                trace_id: None,
            });
        }
    }
    for chunk in syncs.chunks(10_000) {
        store.record_connector_syncs(&tenant, chunk.to_vec(), now).await?;
    }
    let deliveries: Vec<Delivery> = (0..50_000)
        .map(|i| Delivery {
            id: format!("delivery-{i}"),
            destination_id: format!("destination-{}", i % 10),
            item_id: Some(format!("finding-{i}")),
            status: match i % 40 {
                0 => DeliveryStatus::DeadLettered,
                1..=3 => DeliveryStatus::Retrying,
                _ => DeliveryStatus::Succeeded,
            },
            attempt: 1 + (i % 40 <= 3) as i64 * 2,
            latency_ms: Some(40),
            error_message: (i % 40 <= 3).then(|| "HTTP 429".to_owned()),
            attempted_at: Timestamp::from_micros(now_us - i as i64 * 1_700_000),
            trace_id: None,
        })
        .collect();
    for chunk in deliveries.chunks(10_000) {
        store.record_deliveries(&tenant, chunk.to_vec(), now).await?;
    }
    let snapshots: Vec<QueueSnapshot> = (0..13)
        .flat_map(|q| {
            (0..60).map(move |k| QueueSnapshot {
                id: format!("snap-{q}-{k}"),
                component_id: if q < 3 { format!("queue-{q}") } else { format!("destination-{}", q - 3) },
                observed_at: Timestamp::from_micros(now_us - k * 60_000_000),
                depth: QueueDepth { pending: 100 + k, in_flight: 8, retrying: 3, dead_lettered: k % 4 },
                oldest_item_age_ms: Some(5_000),
                processed_total: Some(1_000_000 - k * 600),
                failed_total: Some(10),
            })
        })
        .collect();
    store.record_queue_snapshots(&tenant, snapshots, now).await?;
    let seeding = Instant::now();
    seed_rule_runs(&*store, &tenant, args.rules, args.runs, now_us).await?;
    println!("  seeded in {:.0} s", seeding.elapsed().as_secs_f64());

    let (base, _stop) = start_server(store.clone()).await?;
    let client = reqwest::Client::new();
    let page = format!("{base}/admin/health?tenant={tenant}");
    let data = format!("{base}/admin/health.json?tenant={tenant}");
    // Check the page shows what was seeded before timing it.
    let view: serde_json::Value =
        client.get(&data).bearer_auth(&token).send().await?.error_for_status()?.json().await?;
    anyhow::ensure!(view["connectors"].as_array().map_or(0, Vec::len) == args.connectors, "every connector has a row");
    anyhow::ensure!(
        view["rules"]["slowest"].as_array().map_or(0, Vec::len) == 5.min(args.rules),
        "the slowest rules are listed"
    );
    let baseline = liveness_latencies(&client, &base, args.samples.max(200)).await?;
    let size = |url: &str| {
        let request = client.get(url).bearer_auth(&token);
        async move { anyhow::Ok(request.send().await?.error_for_status()?.bytes().await?.len()) }
    };
    let (page_bytes, data_bytes) = (size(&page).await?, size(&data).await?);
    let timed = |url: String| {
        let (client, token) = (client.clone(), token.clone());
        latencies(args.samples, move |_| {
            let request = client.get(&url).bearer_auth(&token);
            async move {
                request.send().await?.error_for_status()?.bytes().await?;
                Ok(())
            }
        })
    };
    let html = timed(page).await?;
    let json = timed(data).await?;
    println!("  page size {:.0} KiB HTML, {:.0} KiB JSON", page_bytes as f64 / 1024.0, data_bytes as f64 / 1024.0);
    let line = |name: &str, times: &[Duration]| {
        println!(
            "  {name:<36} p50 {:>8.2} ms   p95 {:>8.2} ms   p99 {:>8.2} ms",
            ms(percentile(times, 50.0)),
            ms(percentile(times, 95.0)),
            ms(percentile(times, 99.0)),
        );
    };
    line("baseline: GET /health/liveness", &baseline);
    line("GET /admin/health (HTML)", &html);
    line("GET /admin/health.json", &json);
    println!(
        "  p95 ratio to baseline                {:>8.1}",
        ms(percentile(&html, 95.0)) / ms(percentile(&baseline, 95.0)).max(f64::EPSILON)
    );
    tracing::info!(
        backend = bench.name(),
        console_p95_ms = ms(percentile(&html, 95.0)),
        console_json_p95_ms = ms(percentile(&json, 95.0)),
        "bench console finished"
    );
    Ok(())
}
