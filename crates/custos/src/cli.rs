//! The command line. Every setting is a flag and a `CUSTOS_*` variable (clap's `env`),
//! with its default in code; `custos config print-default` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(
    name = "custos",
    version,
    about = "Observability and forensics for security platforms",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command shares: where the data is, and how to log.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Directory for the embedded SQLite database and local objects.
    #[arg(long, env = "CUSTOS_DATA_DIR", default_value = "./custos-data", global = true)]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user:password@host/db); SQLite under --data-dir when unset.
    /// `serve` wants a login role that owns nothing (a member of custos_app).
    #[arg(long, env = "CUSTOS_DATABASE_URL", value_parser = parse_secret, global = true, hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// PostgreSQL URL of the schema's owner, for migrations only (`custos migrate`, and
    /// any command that finds the schema behind); the other commands then use
    /// --database-url. Unset: migrations use --database-url.
    #[arg(long, env = "CUSTOS_MIGRATE_DATABASE_URL", value_parser = parse_secret, global = true, hide_env_values = true)]
    pub migrate_database_url: Option<SecretString>,
    /// Object store for evidence and exports: s3://bucket/prefix (credentials and endpoint
    /// from the standard AWS_* variables, AWS_ENDPOINT_URL included); objects/ under
    /// --data-dir when unset.
    #[arg(long, env = "CUSTOS_OBJECT_STORE_URL", global = true)]
    pub object_store_url: Option<String>,
    /// Log line format on standard error: `auto` is human-readable text when standard
    /// error is a terminal, JSON lines otherwise.
    #[arg(long, env = "CUSTOS_LOG_FORMAT", value_enum, default_value = "auto", global = true)]
    pub log_format: LogFormatArg,
    /// Log filter: a level (info, debug) or directives (custos=debug,sqlx=warn).
    #[arg(long, env = "CUSTOS_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Deployment name, written as `env` on every log line.
    #[arg(long, env = "CUSTOS_ENV", default_value = "dev", global = true)]
    pub env: String,
    /// Names this deployment in every tenant log's origin
    /// (`<deployment>/tenants/<tenant>/timeline`), which signed checkpoints and verifier
    /// keys carry: pick it once (a host name suits) and never change it.
    #[arg(long, env = "CUSTOS_DEPLOYMENT", default_value = custos_server::DEFAULT_DEPLOYMENT,
          value_parser = parse_deployment, global = true)]
    pub deployment: String,
    /// The checkpoint signing key's file (created 0600 on first `serve` when missing);
    /// keys/checkpoint-signing.key under --data-dir when unset. Every replica needs the same file.
    #[arg(long, env = "CUSTOS_SIGNING_KEY_FILE", global = true)]
    pub signing_key_file: Option<PathBuf>,
}

impl GlobalArgs {
    /// The signing key's file: the flag's, or the default under the data directory.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| self.data_dir.join("keys").join("checkpoint-signing.key"))
    }
}

fn parse_deployment(value: &str) -> Result<String, String> {
    if custos_ledger::note::is_valid_name(value) && !value.contains("/tenants/") {
        Ok(value.to_owned())
    } else {
        Err("a deployment name is printable, without spaces or '+' (custos.example.com)".into())
    }
}

/// How long a new token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLifetime {
    Never,
    For(std::time::Duration),
}

fn parse_lifetime(value: &str) -> Result<TokenLifetime, String> {
    if value == "never" {
        return Ok(TokenLifetime::Never);
    }
    let duration = humantime::parse_duration(value).map_err(|e| format!("{e} (a duration such as 90d, or never)"))?;
    if duration.is_zero() {
        return Err("must be longer than 0 (or never)".into());
    }
    Ok(TokenLifetime::For(duration))
}

fn parse_request_timeout(value: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if (std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600)).contains(&duration) {
        Ok(duration)
    } else {
        Err("must be 1s to 1h".into())
    }
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server.
    Serve(ServeArgs),
    /// Run the server with a simulated platform reporting realistic traffic.
    Demo(DemoArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Open, update and resolve incidents on the status page, through a server's API.
    Incidents(IncidentsArgs),
    /// Look at what a server has recorded (through its API).
    Obs(ObsArgs),
    /// The checkpoint signing key: generate, rotate, list, export the public half.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify tenant logs offline or through a server, pinning the signing key.
    Forensic(ForensicArgs),
    /// Measure speed against baselines taken in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Show configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// How the API server listens and what it accepts.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, logged at start).
    #[arg(long, env = "CUSTOS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve even when the database role can bypass row-level security (a superuser,
    /// BYPASSRLS, or the tables' owner): for development only. Logged loudly, and
    /// `/health` reports `database:role` at warn.
    #[arg(long, env = "CUSTOS_ALLOW_PRIVILEGED_DATABASE_ROLE")]
    pub allow_privileged_database_role: bool,
    /// Largest request body, in bytes (413 beyond).
    #[arg(long, env = "CUSTOS_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most requests served at once; beyond it a request is answered 503 with
    /// Retry-After: 1 at once, not queued (counted in custos_http_requests_shed_total).
    #[arg(long, env = "CUSTOS_MAX_CONCURRENT_REQUESTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_requests: u32,
    /// Longest a request may take to answer (1 s to 1 h): then 503, and its work is
    /// stopped (a transaction rolls back). Evidence uploads and sealing are bounded by
    /// their sizes instead; streamed downloads and exports only need their head in time.
    #[arg(long, env = "CUSTOS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_request_timeout)]
    pub request_timeout: std::time::Duration,
    /// Most records in one NDJSON request (413 beyond).
    #[arg(long, env = "CUSTOS_MAX_BATCH_RECORDS", default_value_t = 50_000)]
    pub max_batch_records: usize,
    /// Largest rule-run `context` kept whole, in bytes; larger ones are truncated with a marker.
    #[arg(long, env = "CUSTOS_MAX_CONTEXT_BYTES", default_value_t = 16 * 1024)]
    pub max_context_bytes: usize,
    /// Also serve /metrics (only) on this address, e.g. 0.0.0.0:9464, with every family
    /// (on the API port, the families labelled by tenant need the metrics token).
    #[arg(long, env = "CUSTOS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on /metrics.
    #[arg(long, env = "CUSTOS_METRICS_TOKEN", value_parser = parse_secret, hide_env_values = true)]
    pub metrics_token: Option<SecretString>,
    /// Prefix of every custos metric name.
    #[arg(long, env = "CUSTOS_METRICS_NAMESPACE", default_value = "custos", value_parser = parse_namespace)]
    pub metrics_namespace: String,
    /// Most series per tenant in each platform metric family (rule runs, connector
    /// syncs, deliveries); label sets beyond it are counted in an `other` series.
    #[arg(long, env = "CUSTOS_METRICS_SERIES_CAP", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub metrics_series_cap: u32,
    /// How often the job monitor checks scheduled jobs for late and missed runs
    /// (`10s`, `1m`). A flip to late or down is recorded within this long.
    #[arg(long, env = "CUSTOS_JOB_MONITOR_PERIOD", default_value = "10s", value_parser = parse_monitor_period)]
    pub job_monitor_period: std::time::Duration,
    /// How often the object store is proved writable (an object written, read back and
    /// deleted); `/health` reports the latest result and fails after three missed periods.
    #[arg(long, env = "CUSTOS_OBJECT_STORE_PROBE_PERIOD", default_value = "15s", value_parser = parse_monitor_period)]
    pub object_store_probe_period: std::time::Duration,
    /// How often the status evaluator derives component states, records their changes
    /// and runs the incident detector. Failure ratios are judged over this period.
    #[arg(long, env = "CUSTOS_STATUS_PERIOD", default_value = "30s", value_parser = parse_monitor_period)]
    pub status_period: std::time::Duration,
    /// Require a token (one that reads at least one tenant) for `/status`, `/status.json`
    /// and the badge; by default the platform view is public.
    #[arg(long, env = "CUSTOS_STATUS_REQUIRE_TOKEN")]
    pub status_require_token: bool,
    /// The status page's title.
    #[arg(long, env = "CUSTOS_STATUS_TITLE", default_value = "custos status")]
    pub status_title: String,
    /// How often every tenant log that grew is checkpointed (signed). Proofs for newer
    /// records get a checkpoint signed on demand.
    #[arg(long, env = "CUSTOS_CHECKPOINT_PERIOD", default_value = "1m", value_parser = parse_monitor_period)]
    pub checkpoint_period: std::time::Duration,
    /// How often the retention worker removes records past retention (their leaf hashes
    /// stay; legal holds block it).
    #[arg(long, env = "CUSTOS_RETENTION_PERIOD", default_value = "1h", value_parser = parse_monitor_period)]
    pub retention_period: std::time::Duration,
    /// Days audit records are kept: at least 365. (The timeline keeps each tenant's
    /// retention_days.)
    #[arg(long, env = "CUSTOS_AUDIT_RETENTION_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(365..=36_500))]
    pub audit_retention_days: u32,
    /// Link template to the trace backend; `{trace_id}` is replaced
    /// (`http://jaeger:16686/trace/{trace_id}`, `https://grafana/explore?…{trace_id}…`).
    #[arg(long, env = "CUSTOS_TRACE_URL_TEMPLATE", value_parser = parse_trace_template)]
    pub trace_url_template: Option<String>,
    /// Largest case artifact accepted, in bytes (`PUT …/evidence/cases/{case}/artifacts/{name}`
    /// answers 413 beyond). Uploads stream: memory use does not grow with it.
    #[arg(long, env = "CUSTOS_EVIDENCE_MAX_ARTIFACT_BYTES", default_value_t = custos_server::evidence::DEFAULT_MAX_ARTIFACT_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub evidence_max_artifact_bytes: u64,
    /// An RFC 3161 time-stamping authority (`http://…` or `https://…`): every bundle's
    /// Merkle root is stamped by it, and sealing fails when it does not answer.
    #[arg(long, env = "CUSTOS_TSA_URL", requires = "tsa_cert")]
    pub tsa_url: Option<String>,
    /// The TSA's certificate(s), PEM, pinned: tokens are accepted, and verified on every
    /// read, only against them.
    #[arg(long, env = "CUSTOS_TSA_CERT", requires = "tsa_url")]
    pub tsa_cert: Option<PathBuf>,
    /// S3 Object Lock retention on every object custos keeps (evidence uploads, bundle
    /// files, job capsules), as MODE:PERIOD: `compliance:365d`, `governance:30d`. Each
    /// write is followed by a PutObjectRetention for the version it created. Needs
    /// CUSTOS_OBJECT_STORE_URL and a bucket created with Object Lock enabled: the server
    /// refuses to start otherwise.
    #[arg(long, env = "CUSTOS_EVIDENCE_OBJECT_LOCK")]
    pub evidence_object_lock: Option<custos_store::objects::ObjectLock>,
}

fn parse_trace_template(value: &str) -> Result<String, String> {
    if !value.contains("{trace_id}") {
        return Err("the template must contain {trace_id}".into());
    }
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err("the template must be an http:// or https:// URL".into());
    }
    Ok(value.to_owned())
}

fn parse_monitor_period(value: &str) -> Result<std::time::Duration, String> {
    let period = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if period < std::time::Duration::from_millis(100) || period > std::time::Duration::from_secs(3600) {
        return Err("must be between 100ms and 1h".into());
    }
    Ok(period)
}

/// Longest overlap `custos keys rotate --overlap` accepts.
pub const MAX_KEY_OVERLAP: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

fn parse_key_overlap(value: &str) -> Result<std::time::Duration, String> {
    let overlap = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if overlap.is_zero() || overlap > MAX_KEY_OVERLAP {
        return Err("must be more than 0s and at most 90 days".into());
    }
    Ok(overlap)
}

fn parse_namespace(value: &str) -> Result<String, String> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(value.to_owned())
    } else {
        Err("a metric namespace is letters, digits and '_', not starting with a digit".into())
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Records per second the simulated platform reports, across all tenants.
    #[arg(long, env = "CUSTOS_DEMO_RATE", default_value_t = 50)]
    pub rate: u32,
    /// Seed of the simulation, so a run can be repeated.
    #[arg(long, env = "CUSTOS_DEMO_SEED", default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        /// Tenant id: lowercase letters, digits and '-', at most 63.
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// How long the tenant's records are kept.
        #[arg(long, default_value_t = 180)]
        retention_days: u32,
    },
    /// List tenants.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it, alone, on standard output. It is shown this once.
    Create {
        /// Tenant the scopes are bound to, or '*' for every tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// A scope, bound to --tenant, or in full (obs:read#tenant/acme). Repeat for
        /// several. ingest:write (report records, components, job pings); obs:read
        /// (read them, health, metrics); timeline:write, timeline:read; audit:write,
        /// audit:read; evidence:create (upload, seal, attest); evidence:read, also
        /// written attest:read (bundles, attestations); evidence:export (download
        /// bundles); evidence:hold (case holds); admin (all of them, and tenant
        /// administration).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A name to recognise the token by.
        #[arg(long, default_value = "unnamed")]
        name: String,
        /// Lifetime, e.g. 30d, 12h, or `never` (a warning is printed: a token that never
        /// expires is a secret to rotate by hand).
        #[arg(long, default_value = "90d", value_parser = parse_lifetime)]
        expires_in: TokenLifetime,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token id (tok_…), as `tokens list` shows it.
        id: String,
    },
}

/// Where the server is and who is asking: the API's own rules apply (an incident needs
/// `admin#tenant/*`), so this works from any machine that reaches the server.
#[derive(Debug, Clone, Args)]
pub struct ServerConnection {
    /// The server's base URL.
    #[arg(long, env = "CUSTOS_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// An API token (`cst_…`).
    #[arg(long, env = "CUSTOS_TOKEN", value_parser = parse_secret, hide_env_values = true, global = true)]
    pub token: Option<SecretString>,
}

#[derive(Debug, Args)]
pub struct IncidentsArgs {
    #[command(flatten)]
    pub connection: ServerConnection,
    #[command(subcommand)]
    pub command: IncidentsCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ImpactArg {
    None,
    Minor,
    Major,
    Critical,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum IncidentStatusArg {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Open an incident; prints its id.
    Open {
        #[arg(long)]
        title: String,
        /// What is known so far (the first update).
        #[arg(long)]
        message: String,
        #[arg(long, value_enum, default_value = "minor")]
        impact: ImpactArg,
        /// An affected component (api, ingestion, delivery, workers, console); repeat for several.
        #[arg(long = "component")]
        components: Vec<String>,
        #[arg(long, value_enum, default_value = "investigating")]
        status: IncidentStatusArg,
    },
    /// Post an update: a new status and what is known.
    Update {
        /// The incident id (inc_…).
        id: String,
        #[arg(long, value_enum)]
        status: IncidentStatusArg,
        #[arg(long)]
        message: String,
        /// A changed impact.
        #[arg(long, value_enum)]
        impact: Option<ImpactArg>,
    },
    /// Resolve an incident (an update with status `resolved`).
    Resolve {
        id: String,
        #[arg(long, default_value = "This incident has been resolved.")]
        message: String,
    },
    /// Open incidents and those resolved in the last 90 days.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the signing key file (0600) and publish its public half; fails if the
    /// file exists (`serve` also creates it on first start).
    Generate,
    /// Replace the key: a new key signs from now on, the old one is retired (its public
    /// half stays published with its validity window; its private half is destroyed).
    /// Recorded in every tenant's timeline and audit log. Running servers switch at
    /// their next signature.
    ///
    /// With --overlap, the old key keeps signing beside the new one until the window
    /// ends: envelopes and checkpoints carry both signatures, so verifiers that pinned
    /// the old key keep working while they fetch the new one. Leave it out when the
    /// old key may be compromised.
    Rotate {
        /// Why, for the audit record.
        #[arg(long, default_value = "scheduled rotation")]
        reason: String,
        /// How long the old key keeps signing beside the new one (`7d`, `12h`; at most
        /// 90 days). Its private half stays in the key file until then.
        #[arg(long, value_parser = parse_key_overlap)]
        overlap: Option<std::time::Duration>,
    },
    /// End a rotation's overlap now: remove the previous key's private half from the
    /// key file and close its window if it is still open.
    DropPrevious {
        /// Why, for the audit record.
        #[arg(long, default_value = "overlap ended")]
        reason: String,
    },
    /// Published keys with their validity windows.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Print the signed-note verifier key(s) of a log: what an auditor pins
    /// (`<origin>+<key id>+<base64 key>`, the form Go's `note` package reads).
    ExportPublic {
        /// The tenant whose log it is.
        #[arg(long, required_unless_present = "origin")]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value = "timeline")]
        log: LogArg,
        /// A log origin instead of --tenant/--log.
        #[arg(long, conflicts_with = "tenant")]
        origin: Option<String>,
        /// Retired keys too (to verify old checkpoints).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogArg {
    Timeline,
    Audit,
}

impl LogArg {
    pub fn name(self) -> custos_model::ledger::LogName {
        match self {
            LogArg::Timeline => custos_model::ledger::LogName::Timeline,
            LogArg::Audit => custos_model::ledger::LogName::Audit,
        }
    }
}

#[derive(Debug, Args)]
pub struct ObsArgs {
    #[command(flatten)]
    pub connection: ServerConnection,
    #[command(subcommand)]
    pub command: ObsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ObsCommand {
    /// Everything of a tenant that carries a trace id — rule runs, connector syncs,
    /// timeline events, audit records — as a time-ordered tree.
    Trace {
        /// The trace id: 32 lowercase hex digits.
        trace_id: String,
        #[arg(long)]
        tenant: String,
        /// Search rule runs and syncs from here (RFC 3339); by default an hour around
        /// the trace's timeline and audit records, or the last day.
        #[arg(long)]
        from: Option<String>,
        /// … up to here (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Print the server's JSON instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ForensicArgs {
    #[command(flatten)]
    pub connection: ServerConnection,
    #[command(subcommand)]
    pub command: ForensicCommand,
}

#[derive(Debug, Subcommand)]
pub enum ForensicCommand {
    /// Recompute a tenant log from its records and verify it against a signed
    /// checkpoint and a pinned key; on failure, name the first record that does not
    /// match. Exits 0 when the log verifies, 1 when it does not.
    VerifyLog(VerifyLogArgs),
    /// Verify an evidence bundle offline: every file's SHA-256, the Merkle root, and the
    /// manifest's signature by a key valid when the bundle was made. Streams; needs no
    /// server. Exits 0 when it verifies, 1 when it does not (saying which file and
    /// which check), 2 for a usage error or unreadable input.
    Verify(VerifyBundleArgs),
    /// Evidence bundles through a server: seal one, and download it.
    Snapshot(SnapshotArgs),
    /// Case artifacts through a server: upload one, streamed, with progress.
    Artifact(ArtifactArgs),
    /// Provenance attestations: show and verify them.
    Attest(AttestArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Seal a signed evidence bundle on the server and print its id, root and trace id;
    /// with --output, download it (progress on stderr).
    Create(SnapshotCreateArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SnapshotScope {
    /// The case's uploaded artifacts.
    Case,
    /// A rule run (--id: its id), with the timeline events about it and their proofs.
    Eval,
    /// A job run's capsule (--id: JOB/RUN_ID), with its report and proofs.
    Job,
    /// An export (not sealed by this build yet).
    Export,
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotCreateArgs {
    #[arg(long)]
    pub tenant: String,
    /// The case the bundle belongs to.
    #[arg(long)]
    pub case: String,
    /// What to preserve.
    #[arg(long, value_enum, default_value = "case")]
    pub scope: SnapshotScope,
    /// What the bundle is of: a rule run's id (eval), `JOB/RUN_ID` (job); for
    /// `case`, the case itself (the default).
    #[arg(long)]
    pub id: Option<String>,
    /// Download the sealed bundle's .tar.gz here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArtifactArgs {
    #[command(subcommand)]
    pub command: ArtifactCommand,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Upload a file to a case (streamed; write-once: a name is taken once).
    Upload(ArtifactUploadArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ArtifactUploadArgs {
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub case: String,
    /// The file to upload.
    pub file: PathBuf,
    /// Its name in the case (default: the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Its media type.
    #[arg(long, default_value = "application/octet-stream")]
    pub media_type: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    #[command(subcommand)]
    pub command: AttestCommand,
}

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Show an artifact's or a bundle's provenance, verified: offline with --envelope,
    /// or looked up on the server by digest (or by bundle id). Exits 0 when an
    /// attestation verifies, 1 when none does, 2 for a usage error or unreadable input.
    Show(AttestShowArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AttestShowArgs {
    /// A file (its SHA-256 is the subject), a bundle (`.tar.gz` or directory: its
    /// manifest.json is the subject), or a bundle id on the server.
    pub target: String,
    /// The attestation (a DSSE envelope as JSON), to check offline.
    #[arg(long)]
    pub envelope: Option<PathBuf>,
    /// The tenant to look attestations up in, on the server (without --envelope); with
    /// --envelope, the tenant the statement must belong to.
    #[arg(long)]
    pub tenant: Option<String>,
    /// A trusted public key, as for `forensic verify`; repeat for several. Without
    /// --key or --keyring, the server's /v1/keys are used (integrity, not trust).
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// A keyring: the JSON of `GET /v1/keys`, saved.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyBundleArgs {
    /// The bundle: a `.tar.gz` as downloaded, or a directory holding its manifest.json.
    pub bundle: PathBuf,
    /// A trusted public key: the raw Ed25519 key in base64 (`public_key` in /v1/keys)
    /// or a verifier key from `custos keys export-public`. Repeat for several.
    #[arg(long = "key", required_unless_present = "keyring")]
    pub keys: Vec<String>,
    /// A keyring: the JSON of `GET /v1/keys`, saved. Keys then count only inside their
    /// validity windows.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// The time-stamping authority's certificate(s), PEM: a bundle's RFC 3161 timestamp
    /// is then verified (without it, a timestamp is reported present but unchecked).
    #[arg(long)]
    pub tsa_cert: Option<PathBuf>,
    /// The bundle's provenance attestation (its DSSE envelope as JSON, from `GET
    /// …/attestations?subject_id=<bundle>`): verified too, and refused unless it is
    /// custos's own provenance of this bundle, of the bundle's tenant.
    #[arg(long)]
    pub attestation: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyLogArgs {
    /// The tenant whose log to fetch (with the server; an export names its own).
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long, value_enum, default_value = "timeline")]
    pub log: LogArg,
    /// Verify this export file (`GET …/{log}/export`) offline instead of fetching one.
    #[arg(long, conflicts_with = "tenant")]
    pub export: Option<PathBuf>,
    /// Keep the export fetched from the server in this file.
    #[arg(long, conflicts_with = "export")]
    pub save: Option<PathBuf>,
    /// A pinned verifier key (`custos keys export-public`); repeat for several (a
    /// rotation). Or `@FILE` for a file of them, one per line.
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// Take the keys from the server's /v1/keys instead of pinning them: checks
    /// integrity, but trusts the server for the key.
    #[arg(long, conflicts_with = "keys")]
    pub trust_server_keys: bool,
    /// An earlier checkpoint (a signed note saved from `GET …/checkpoint`): the log
    /// must extend it.
    #[arg(long)]
    pub from_checkpoint: Option<PathBuf>,
    /// Fail unless every retention record in the log states at least this many days
    /// (the retention the tenant was promised): a prune under a shorter one, or one that
    /// states none, is reported as a failure.
    #[arg(long)]
    pub min_retention_days: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Rule runs streamed as NDJSON over loopback HTTP, against a direct insert baseline.
    Ingest(BenchIngestArgs),
    /// A filtered rule-run query over a large table, against an unloaded request.
    Query(BenchQueryArgs),
    /// Scheduled-job pings over loopback HTTP, against unloaded requests at the same
    /// concurrency.
    Pings(BenchPingsArgs),
    /// `GET /health` latency while rule runs are ingested at full speed, against the same
    /// request unloaded.
    Health(BenchHealthArgs),
    /// Tenant logs on SQLite: hashed appends against unhashed inserts, proofs on a large
    /// log against a point read, offline verification against SHA-256.
    Timeline(BenchTimelineArgs),
    /// The evidence locker on a large bundle: upload, seal, read back, download and
    /// offline verification, each against SHA-256 over the same bytes, with its peak RSS.
    Evidence(BenchEvidenceArgs),
    /// `/admin/health` rendered over a large tenant (500 connectors, 2,000 rules, 10
    /// million rule runs by default), against an unloaded request.
    Console(BenchConsoleArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchEvidenceArgs {
    /// Bytes in the bundle (1 GiB by default).
    #[arg(long, default_value_t = 1 << 30)]
    pub bytes: u64,
    /// Artifacts the bytes are split into.
    #[arg(long, default_value_t = 16)]
    pub files: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchTimelineArgs {
    /// Events appended (hashed, and as plain rows for the baseline), then exported and
    /// verified.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per append (50,000: the API's largest batch).
    #[arg(long, default_value_t = 50_000)]
    pub batch: u64,
    /// Events in the log the proofs are read from.
    #[arg(long, default_value_t = 10_000_000)]
    pub proof_log_size: u64,
    /// Proofs of each kind timed.
    #[arg(long, default_value_t = 1_000)]
    pub proof_samples: usize,
    /// Rounds of verification and SHA-256 (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchConsoleArgs {
    /// Store to measure; postgres needs --database-url / CUSTOS_DATABASE_URL.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Connectors registered (each reports a sync every 15 minutes over the last day).
    #[arg(long, default_value_t = 500)]
    pub connectors: usize,
    /// Distinct rule keys.
    #[arg(long, default_value_t = 2_000)]
    pub rules: usize,
    /// Rule runs stored, spread over the last 7 days.
    #[arg(long, default_value_t = 10_000_000)]
    pub runs: usize,
    /// `/admin/health` requests measured.
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchHealthArgs {
    /// Store to measure; postgres needs --database-url / CUSTOS_DATABASE_URL.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// How long ingestion runs while `/health` is sampled, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Concurrent ingesting connections.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Rule runs per NDJSON request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Pause between two `/health` requests, in milliseconds (one at a time, as a
    /// load balancer or monitor asks).
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchPingsArgs {
    /// Store to measure; postgres needs --database-url / CUSTOS_DATABASE_URL.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Pings to send.
    #[arg(long, default_value_t = 200_000)]
    pub pings: usize,
    /// Jobs the pings are spread over.
    #[arg(long, default_value_t = 500)]
    pub jobs: usize,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Args)]
pub struct BenchIngestArgs {
    /// Store to measure; postgres needs --database-url / CUSTOS_DATABASE_URL.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Rule runs to send end to end.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Records per NDJSON request.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Single-record POSTs timed one at a time for the latency figures.
    #[arg(long, default_value_t = 2000)]
    pub latency_samples: usize,
    /// Also measure tracing's cost: the same load with trace export off and on (every
    /// span sampled, exported over OTLP/HTTP to a live receiver in the process).
    #[arg(long)]
    pub tracing: bool,
    /// Single-record POSTs per tracing round and mode (with --tracing).
    #[arg(long, default_value_t = 2_000)]
    pub tracing_requests: usize,
    /// Rounds of off and on (with --tracing); the median is reported. Many short
    /// rounds beat a few long ones on a shared machine.
    #[arg(long, default_value_t = 16)]
    pub tracing_rounds: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchQueryArgs {
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BenchBackend,
    /// Rule runs stored before querying.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Distinct rule keys among them.
    #[arg(long, default_value_t = 1000)]
    pub rule_keys: usize,
    /// Days the rows are spread over.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Queries timed.
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting with its description, variable and default.
    PrintDefault,
}
