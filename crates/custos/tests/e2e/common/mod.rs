//! What the binary's integration tests share: a store to point `custos` at, a
//! running `custos serve` child, and small request helpers.

pub mod otlp;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_custos");

/// Where a test's store lives: a fresh SQLite directory or a fresh PostgreSQL database.
pub struct Store {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database as its owner (for migrations, and for tests that tamper).
    pub database_url: Option<String>,
    /// The same database as a login role that owns nothing: what `custos` runs as.
    pub app_url: Option<String>,
    _database: Option<custos_store::testing::TestDatabase>,
}

impl Store {
    pub fn sqlite() -> Self {
        Store { dir: tempfile::tempdir().unwrap(), database_url: None, app_url: None, _database: None }
    }

    pub async fn postgres() -> Self {
        let database = custos_store::testing::fresh_postgres().await;
        Store {
            dir: tempfile::tempdir().unwrap(),
            database_url: Some(database.url().to_owned()),
            app_url: Some(database.app_url()),
            _database: Some(database),
        }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.env("CUSTOS_DATA_DIR", self.dir.path());
        // As an operator runs it: the service as a role that owns nothing, migrations as
        // the owner.
        if let (Some(owner), Some(app)) = (&self.database_url, &self.app_url) {
            command.env("CUSTOS_DATABASE_URL", app).env("CUSTOS_MIGRATE_DATABASE_URL", owner);
        }
        command
    }

    /// Runs `custos <args>`; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = self.command().args(args).output().unwrap();
        (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "custos {args:?} failed: {stderr}");
        stdout
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, _, stderr) = self.run(args);
        assert!(!ok, "custos {args:?} should have failed");
        stderr
    }
}

/// A running `custos serve` child and the address it logged.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(store: &Store) -> Self {
        Self::start_with(store, &[])
    }

    pub fn start_with(store: &Store, extra: &[&str]) -> Self {
        Self::start_with_env(store, extra, &[])
    }

    /// Starts `custos serve` with extra arguments and environment variables.
    pub fn start_with_env(store: &Store, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::spawn(store, &args, env)
    }

    /// Starts `custos <args>` (a command that serves and logs `listening`).
    pub fn spawn(store: &Store, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = store
            .command()
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let address = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("custos serve logs its address");
            let json: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            if json["message"] == "listening" {
                break json["address"].as_str().unwrap().to_owned();
            }
        };
        Server { child, base: format!("http://{address}"), stderr: rx }
    }

    /// Sends SIGTERM and returns whether it exited cleanly, with its remaining log lines.
    pub fn stop(mut self) -> (bool, Vec<String>) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        (status.success(), self.stderr.try_iter().collect())
    }
}

/// A test that fails before `stop` must not leave its server running (a demo server
/// would go on making traffic on the machine for the rest of the suite).
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn create_token(store: &Store, args: &[&str]) -> String {
    let mut full = vec!["tokens", "create"];
    full.extend_from_slice(args);
    let stdout = store.ok(&full);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "tokens create prints the token alone: {stdout:?}");
    assert!(lines[0].starts_with("cst_"), "{stdout}");
    lines[0].to_owned()
}

pub fn rule_run(id: &str) -> String {
    serde_json::json!({"id": id, "rule_key": "k", "status": "succeeded", "started_at": "2026-11-22T10:00:00Z"})
        .to_string()
}

/// Reports rule run `id` to tenant acme on the server at `base`; returns the status.
pub async fn post_rule_run(client: &reqwest::Client, base: &str, token: &str, id: &str) -> u16 {
    let response = client
        .post(format!("{base}/v1/tenants/acme/rule-runs"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(rule_run(id))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// Writes a small `notes.txt` into the store's directory, uploads it to tenant acme's
/// `case` and seals the case into `bundle.tar.gz` there, with the CLI against `server`;
/// returns the archive's path.
pub fn upload_and_seal(store: &Store, server: &Server, token: &str, case: &str) -> std::path::PathBuf {
    let notes = store.dir.path().join("notes.txt");
    std::fs::write(&notes, b"seen at 03:12\n").unwrap();
    let archive = store.dir.path().join("bundle.tar.gz");
    let connection = ["--server", &server.base, "--token", token];
    let upload = ["forensic", "artifact", "upload", "--tenant", "acme", "--case", case, notes.to_str().unwrap()];
    store.ok(&[&upload[..], &connection[..]].concat());
    let seal =
        ["forensic", "snapshot", "create", "--tenant", "acme", "--case", case, "--output", archive.to_str().unwrap()];
    store.ok(&[&seal[..], &connection[..]].concat());
    archive
}
