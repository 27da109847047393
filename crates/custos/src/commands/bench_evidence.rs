//! `custos bench evidence`: the evidence locker end to end, on a bundle of `--bytes`
//! split into `--files` artifacts. The server is a `custos serve` child process (SQLite,
//! the local object directory), driven over loopback HTTP; the offline verifiers are
//! `custos forensic verify` child processes. Each phase's throughput stands next to
//! single-threaded SHA-256 over the same bytes in memory, measured in the same run, and
//! next to the peak RSS of the process doing the work (the server's peak is reset
//! between phases).
//!
//! Phases: upload (streamed `PUT`s), seal (`POST …/snapshots`: every artifact re-hashed,
//! linked into the bundle, the manifest signed), read back (`GET …/{bundle}`: every file
//! re-verified), download (the deterministic `.tar.gz`, counted as it streams; then
//! again to disk, checked to be the same bytes), and offline
//! verification of the archive and of the bundle's directory.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use custos_model::{TenantId, Timestamp, token};
use custos_store::{Tenant, TokenRecord};
use futures::StreamExt;
use sha2::Digest;

use crate::cli::BenchEvidenceArgs;

const CHUNK: usize = 256 * 1024;

/// A process's peak resident memory since its last reset, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets a process's peak RSS to its current RSS (Linux: `5` to `clear_refs`).
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), b"5");
}

/// Runs a child to its end, sampling its peak RSS every few milliseconds (the last
/// sample before it exits: a streaming verifier's memory is flat once it runs).
fn run_sampled(command: &mut Command) -> anyhow::Result<(std::process::ExitStatus, f64)> {
    let mut child = command.spawn()?;
    let mut peak = 0.0f64;
    loop {
        peak = peak.max(peak_rss_mib(child.id()));
        if let Some(status) = child.try_wait()? {
            return Ok((status, peak));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The server child: killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fills `path` with `size` bytes of a cheap pseudo-random sequence (incompressible, so
/// no layer can shortcut it), `CHUNK` at a time.
fn write_artifact(path: &std::path::Path, size: u64, seed: u64) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::with_capacity(CHUNK, std::fs::File::create(path)?);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chunk = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()
}

struct Phase {
    name: &'static str,
    took: Duration,
    peak_mib: f64,
}

pub async fn run(args: &BenchEvidenceArgs) -> anyhow::Result<()> {
    ensure!(args.files >= 1 && args.bytes >= args.files, "--bytes must be at least --files");
    let dir = tempfile::Builder::new().prefix("custos-bench-evidence").tempdir().context("creating a temp dir")?;
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs)?;
    let per_file = args.bytes / args.files;
    let total = per_file * args.files;
    println!(
        "custos bench evidence: a custos serve process (sqlite, local objects); a bundle of {:.0} MiB in {} \
         artifacts of {:.0} MiB",
        total as f64 / 1048576.0,
        args.files,
        per_file as f64 / 1048576.0
    );
    let names: Vec<String> = (0..args.files).map(|i| format!("artifact-{i:03}.bin")).collect();
    for (i, name) in names.iter().enumerate() {
        write_artifact(&inputs.join(name), per_file, i as u64 + 1)?;
    }

    // The baseline: SHA-256 of the same bytes, in memory, on one thread.
    let mut buffer = vec![0u8; per_file as usize];
    let mut sha_time = Duration::ZERO;
    for name in &names {
        std::fs::File::open(inputs.join(name))?.read_exact(&mut buffer)?;
        let began = Instant::now();
        std::hint::black_box(sha2::Sha256::digest(&buffer));
        sha_time += began.elapsed();
    }
    drop(buffer);
    let sha_rate = total as f64 / 1e6 / sha_time.as_secs_f64();

    // The server's data: a tenant and a token, written before it starts.
    let data = dir.path().join("data");
    let secret = {
        let store = custos_store::open(None, &data).await?;
        let tenant = TenantId::parse("bench").expect("a tenant id");
        store
            .create_tenant(&Tenant { id: tenant, name: None, retention_days: 30, created_at: Timestamp::now() })
            .await?;
        let generated = token::generate();
        store
            .create_token(&TokenRecord {
                id: generated.id,
                name: "bench".into(),
                secret_hash: generated.secret_hash,
                scopes: vec!["admin#tenant/bench".parse().expect("a scope")],
                created_at: Timestamp::now(),
                expires_at: None,
                revoked_at: None,
            })
            .await?;
        generated.secret
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let exe = std::env::current_exe().context("finding this executable")?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let server = Server(
        Command::new(&exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("CUSTOS_DATA_DIR", &data)
            .env("CUSTOS_EVIDENCE_MAX_ARTIFACT_BYTES", per_file.to_string())
            .env("CUSTOS_LOG", "warn")
            .env_remove("CUSTOS_DATABASE_URL")
            .env_remove("CUSTOS_OBJECT_STORE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting custos serve")?,
    );
    let pid = server.0.id();
    let root = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = Instant::now();
    while client.get(format!("{root}/health/liveness")).send().await.is_err() {
        ensure!(ready.elapsed() < Duration::from_secs(30), "custos serve did not start; see its log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys: serde_json::Value = client.get(format!("{root}/v1/keys")).send().await?.json().await?;
    let public_key = keys["keys"][0]["public_key"].as_str().context("the server's public key")?.to_owned();
    let base = format!("{root}/v1/tenants/bench/evidence");
    let idle_mib = peak_rss_mib(pid);
    let mut phases = Vec::new();
    let mut phase = |name, began: Instant, peak_mib| {
        phases.push(Phase { name, took: began.elapsed(), peak_mib });
        reset_peak_rss(pid);
    };

    reset_peak_rss(pid);
    let began = Instant::now();
    for name in &names {
        let file = tokio::fs::File::open(inputs.join(name)).await?;
        let stream = super::forensic_evidence::file_chunks(file);
        let response = client
            .put(format!("{base}/cases/bench-case/artifacts/{name}"))
            .bearer_auth(&secret)
            .header("content-type", "application/octet-stream")
            .header("content-length", per_file)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await?;
        ensure!(response.status() == 201, "upload of {name}: {}", response.text().await?);
    }
    phase("upload (streamed PUTs)", began, peak_rss_mib(pid));

    let began = Instant::now();
    let response = client
        .post(format!("{base}/snapshots"))
        .bearer_auth(&secret)
        .json(&serde_json::json!({"kind": "case", "case_id": "bench-case"}))
        .send()
        .await?;
    ensure!(response.status() == 201, "sealing: {}", response.text().await?);
    let sealed: serde_json::Value = response.json().await?;
    phase("seal (re-hash, link, sign)", began, peak_rss_mib(pid));
    let bundle = sealed["bundle_id"].as_str().context("a bundle id")?.to_owned();

    let began = Instant::now();
    let read: serde_json::Value =
        client.get(format!("{base}/{bundle}")).bearer_auth(&secret).send().await?.json().await?;
    ensure!(read["verification"]["verified"] == true, "the bundle verifies on read: {}", read["verification"]);
    phase("read back, re-verified", began, peak_rss_mib(pid));

    // Timed: the stream as fast as the server sends it (counted, not stored: writing a
    // gigabyte to this machine's disk is slower than producing it). Then again, untimed,
    // to disk for the offline verifiers; the same bytes both times.
    let began = Instant::now();
    let response = client.get(format!("{base}/{bundle}/download")).bearer_auth(&secret).send().await?;
    ensure!(response.status() == 200, "download: {}", response.status());
    let mut received = 0u64;
    let mut crc = crc32fast::Hasher::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        received += chunk.len() as u64;
        crc.update(&chunk);
    }
    phase("download (.tar.gz, streamed)", began, peak_rss_mib(pid));
    let archive = dir.path().join(format!("{bundle}.tar.gz"));
    let response = client.get(format!("{base}/{bundle}/download")).bearer_auth(&secret).send().await?;
    let mut out = std::io::BufWriter::with_capacity(CHUNK, std::fs::File::create(&archive)?);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?)?;
    }
    out.flush()?;
    drop(out);
    let stored = std::fs::read(&archive).map(|b| (b.len() as u64, crc32fast::hash(&b)))?;
    ensure!(stored == (received, crc.finalize()), "two downloads of the bundle differ");
    drop(server);

    let bundle_dir = data.join(format!("objects/tenants/bench/evidence/bench-case/{bundle}"));
    for (name, input) in [("offline verify, .tar.gz", &archive), ("offline verify, directory", &bundle_dir)] {
        let began = Instant::now();
        let mut verify = Command::new(&exe);
        verify.args(["forensic", "verify", "--key", &public_key]).arg(input).env("CUSTOS_LOG", "warn");
        let (status, peak_mib) = tokio::task::block_in_place(|| run_sampled(verify.stdout(Stdio::null())))
            .context("running custos forensic verify")?;
        if !status.success() {
            bail!("custos forensic verify {} failed: {status}", input.display());
        }
        phases.push(Phase { name, took: began.elapsed(), peak_mib });
    }

    let archive_mb = std::fs::metadata(&archive)?.len() as f64 / 1e6;
    let mb = total as f64 / 1e6;
    println!(
        "  baseline, SHA-256 in memory, one thread  {sha_rate:>8.0} MB/s  ({mb:.0} MB in {:.2} s)",
        sha_time.as_secs_f64()
    );
    println!(
        "  the server, idle                                                               RSS {idle_mib:>5.1} MiB"
    );
    for p in &phases {
        let rate = mb / p.took.as_secs_f64();
        println!(
            "  {:<40} {:>8.0} MB/s  ratio to SHA-256 {:>5.2}  {:>6.2} s  peak RSS {:>5.1} MiB",
            p.name,
            rate,
            rate / sha_rate,
            p.took.as_secs_f64(),
            p.peak_mib
        );
    }
    println!(
        "  bundle {bundle}: {} files, archive {archive_mb:.0} MB, merkle root {}",
        sealed["files"],
        sealed["merkle_root"].as_str().unwrap_or_default()
    );
    Ok(())
}
