//! `custos bench timeline`: the tamper-evident logs on SQLite, each figure next to a
//! baseline measured in the same run.
//!
//! - **Appends**: batches of timeline events appended with Merkle hashing, stored
//!   subtree hashes and duplicate checks, against the same rows inserted as plain rows
//!   (one prepared statement, one transaction per batch). The two alternate batch by
//!   batch, so the machine's noise falls on both.
//! - **Proofs**: inclusion and consistency proofs read from the stored hashes of a
//!   large log (10 million events by default), against a point read of one record by
//!   its id on the same log.
//! - **Offline verification**: a whole export verified (`custos forensic verify-log
//!   --export`'s code) against SHA-256 over the same bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use custos_ledger::export::{EXPORT_FORMAT, ExportHeader, Verifier, leaf_line};
use custos_ledger::merkle::{self, Hash};
use custos_ledger::note::Checkpoint;
use custos_model::ledger::{LogName, TimelineEvent, log_origin};
use custos_model::{TenantId, Timestamp};
use custos_store::{LogAppend, SqliteStore, Store, Tenant};
use rand::{Rng, SeedableRng};
use sha2::Digest;

use super::bench::{ms, percentile};
use crate::cli::BenchTimelineArgs;

fn event(tenant: &TenantId, n: u64, rich: bool) -> LogAppend {
    let ts = Timestamp::from_micros(1_795_000_000_000_000 + n as i64 * 1000);
    let event = if rich {
        TimelineEvent {
            event_id: format!("evt-{n:010}"),
            ts,
            tenant_id: tenant.clone(),
            project_id: Some(format!("project-{}", n % 17)),
            kind: ["platform.policy.changed", "platform.job.failed", "platform.connector.synced"][(n % 3) as usize]
                .into(),
            actor: Some(format!("user-{}@example.com", n % 101)),
            resource_type: Some("policy".into()),
            resource_id: Some(format!("pol-{}", n % 997)),
            trace_id: Some(format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)),
            details: serde_json::json!({"version": n % 50, "change": "threshold", "from": 5, "to": 7}),
        }
    } else {
        TimelineEvent {
            event_id: format!("e{n}"),
            ts,
            tenant_id: tenant.clone(),
            project_id: None,
            kind: "platform.a.b".into(),
            actor: None,
            resource_type: None,
            resource_id: None,
            trace_id: None,
            details: serde_json::json!({}),
        }
    };
    LogAppend::timeline(&event)
}

async fn tenant(store: &dyn Store, id: &str) -> anyhow::Result<TenantId> {
    let id = TenantId::parse(id).expect("a valid tenant id");
    store
        .create_tenant(&Tenant { id: id.clone(), name: None, retention_days: 180, created_at: Timestamp::now() })
        .await?;
    Ok(id)
}

pub async fn run(args: &BenchTimelineArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("custos-bench").tempdir().context("creating a temp dir")?;
    let sqlite = SqliteStore::open(&dir.path().join("custos.db")).await?;
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    store.migrate().await?;
    println!(
        "custos bench timeline: sqlite, {} events in batches of {}; proofs on a log of {} events",
        args.events, args.batch, args.proof_log_size
    );

    // Appends, alternating with the baseline batch by batch. The baseline writes to a
    // database of its own, so neither grows the other's tables and indexes.
    let plain_sqlite = SqliteStore::open(&dir.path().join("baseline.db")).await?;
    plain_sqlite.migrate().await?;
    let hashed = tenant(&*store, "bench-hashed").await?;
    let plain = tenant(&plain_sqlite, "bench-plain").await?;
    let mut hashed_time = Duration::ZERO;
    let mut plain_time = Duration::ZERO;
    let mut bytes = 0usize;
    let mut start = 0u64;
    while start < args.events {
        let end = (start + args.batch).min(args.events);
        let batch: Vec<LogAppend> = (start..end).map(|n| event(&hashed, n, true)).collect();
        bytes += batch.iter().map(|r| r.record.len()).sum::<usize>();
        let rows: Arc<Vec<LogAppend>> = Arc::new((start..end).map(|n| event(&plain, n, true)).collect());
        let began = Instant::now();
        plain_sqlite.baseline_insert_log(&plain, LogName::Timeline, rows, start, Timestamp::now()).await?;
        plain_time += began.elapsed();
        let began = Instant::now();
        let outcome = store.append_log(&hashed, LogName::Timeline, batch, Timestamp::now()).await?;
        hashed_time += began.elapsed();
        anyhow::ensure!(outcome.inserted as u64 == end - start, "every event is appended");
        start = end;
    }
    let hashed_rate = args.events as f64 / hashed_time.as_secs_f64();
    let plain_rate = args.events as f64 / plain_time.as_secs_f64();
    println!(
        "  appends, hashed + stored nodes {:>12.0} events/s  ({} in {:.2} s; records average {} bytes)",
        hashed_rate,
        args.events,
        hashed_time.as_secs_f64(),
        bytes / args.events.max(1) as usize
    );
    println!(
        "  baseline, unhashed insert      {:>12.0} events/s  ({} in {:.2} s, the same rows, one prepared statement)",
        plain_rate,
        args.events,
        plain_time.as_secs_f64()
    );
    println!("  ratio hashed / unhashed        {:>12.2}", hashed_rate / plain_rate);

    // Offline verification of the appended log's export, against SHA-256 over its bytes.
    let export = export_bytes(&*store, &hashed).await?;
    let key = custos_server::keys::SigningKey::generate();
    let origin = log_origin("bench.custos", &hashed, LogName::Timeline);
    let verifier = Verifier::new(vec![key.signer(&origin)?.verifier()]);
    let export = sign_export(&*store, &hashed, &key, &origin, export).await?;
    let mut verify_times = Vec::new();
    let mut sha_times = Vec::new();
    for _ in 0..args.rounds {
        let began = Instant::now();
        let report = verifier.verify(&export[..])?;
        verify_times.push(began.elapsed());
        anyhow::ensure!(report.records == args.events, "every record verified");
        let began = Instant::now();
        std::hint::black_box(sha2::Sha256::digest(&export));
        sha_times.push(began.elapsed());
    }
    verify_times.sort();
    sha_times.sort();
    let mb = export.len() as f64 / 1e6;
    let verify_rate = mb / percentile(&verify_times, 50.0).as_secs_f64();
    let sha_rate = mb / percentile(&sha_times, 50.0).as_secs_f64();
    println!(
        "  offline verify of the export   {:>12.0} MB/s      ({:.1} MB, {} events, median of {} rounds: {:.3} s)",
        verify_rate,
        mb,
        args.events,
        args.rounds,
        percentile(&verify_times, 50.0).as_secs_f64()
    );
    println!("  baseline, SHA-256 of the bytes {:>12.0} MB/s", sha_rate);
    println!("  ratio verify / SHA-256         {:>12.2}", verify_rate / sha_rate);

    // Proofs on a large log.
    let large = tenant(&*store, "bench-large").await?;
    let began = Instant::now();
    let mut start = 0u64;
    while start < args.proof_log_size {
        let end = (start + 50_000).min(args.proof_log_size);
        let batch: Vec<LogAppend> = (start..end).map(|n| event(&large, n, false)).collect();
        store.append_log(&large, LogName::Timeline, batch, Timestamp::now()).await?;
        start = end;
        if start.is_multiple_of(1_000_000) {
            eprint!("\r  building the large log: {start} events");
        }
    }
    eprintln!();
    println!(
        "  large log built                {:>12} events in {:.1} s",
        args.proof_log_size,
        began.elapsed().as_secs_f64()
    );
    let head = store.log_head(&large, LogName::Timeline).await?;
    let size = head.size;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut inclusion, mut consistency, mut point) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.proof_samples {
        let index = rng.random_range(0..size);
        let began = Instant::now();
        let proof = assemble(&*store, &large, merkle::inclusion_plan(index, size)?).await?;
        inclusion.push(began.elapsed());
        let leaf = store.log_leaves(&large, LogName::Timeline, index, index + 1).await?[0].leaf_hash;
        merkle::verify_inclusion(index, size, &leaf, &proof, &head.root)?;

        let old = rng.random_range(1..size);
        let began = Instant::now();
        let proof = assemble(&*store, &large, merkle::consistency_plan(old, size)?).await?;
        consistency.push(began.elapsed());
        anyhow::ensure!(!proof.is_empty() || old == size);

        let id = format!("e{}", rng.random_range(0..size));
        let began = Instant::now();
        let found = store.log_entry(&large, LogName::Timeline, &id).await?;
        point.push(began.elapsed());
        anyhow::ensure!(found.is_some());
    }
    for times in [&mut inclusion, &mut consistency, &mut point] {
        times.sort();
    }
    let line = |name: &str, times: &[Duration]| {
        println!(
            "  {name:<30} p50 {:.3} ms  p99 {:.3} ms  ({} samples)",
            ms(percentile(times, 50.0)),
            ms(percentile(times, 99.0)),
            times.len()
        );
    };
    line("inclusion proof", &inclusion);
    line("consistency proof", &consistency);
    line("baseline, one record by id", &point);
    println!(
        "  ratio inclusion p50 / by id    {:>12.2}",
        ms(percentile(&inclusion, 50.0)) / ms(percentile(&point, 50.0))
    );
    Ok(())
}

async fn assemble(store: &dyn Store, tenant: &TenantId, plan: merkle::ProofPlan) -> anyhow::Result<Vec<Hash>> {
    let found: std::collections::HashMap<_, _> =
        store.log_nodes(tenant, LogName::Timeline, &plan.nodes()).await?.into_iter().collect();
    Ok(plan.assemble(|node| found.get(&node).copied())?)
}

/// The leaf lines of a whole log, as `GET …/export` writes them.
async fn export_bytes(store: &dyn Store, tenant: &TenantId) -> anyhow::Result<Vec<u8>> {
    let size = store.log_head(tenant, LogName::Timeline).await?.size;
    let mut out = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + 10_000).min(size);
        for row in store.log_leaves(tenant, LogName::Timeline, start, end).await? {
            leaf_line(row.leaf_index, &row.leaf_hash, row.record.as_deref(), &mut out);
        }
        start = end;
    }
    Ok(out)
}

/// The header (with a checkpoint signed by `key`) before the leaf lines.
async fn sign_export(
    store: &dyn Store,
    tenant: &TenantId,
    key: &custos_server::keys::SigningKey,
    origin: &str,
    leaves: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let head = store.log_head(tenant, LogName::Timeline).await?;
    let note = Checkpoint { origin: origin.to_owned(), size: head.size, root: head.root, extensions: Vec::new() }
        .sign(&key.signer(origin)?)?;
    let header = ExportHeader {
        format: EXPORT_FORMAT.into(),
        origin: origin.to_owned(),
        size: head.size,
        pruned_before: 0,
        checkpoint: note,
    };
    let mut out = header.to_line().into_bytes();
    out.extend_from_slice(&leaves);
    Ok(out)
}
