//! Store errors. Database error codes are mapped to these domain errors here, in the
//! backends, never in handlers.

use custos_model::records::RecordKind;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id:?} already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// A record with this id is stored with different content.
    #[error("{} {id:?} already exists with different content", kind.as_str())]
    Conflict { kind: RecordKind, id: String },
    /// An event id is in a log with different bytes.
    #[error("{log} event {id:?} already exists with different content")]
    LogConflict { log: &'static str, id: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migration {version} ({name}) failed")]
    Migration {
        version: i64,
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "migration {version} ({name}) was applied with different content; the database was migrated by another build"
    )]
    MigrationChanged { version: i64, name: String },
    #[error("stored {what} cannot be read: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("sqlite: {context}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("sqlite connection pool")]
    SqlitePool(#[from] r2d2::Error),
    #[error("postgres: {context}")]
    Postgres {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("object store: {context}")]
    Object {
        context: String,
        #[source]
        source: object_store::Error,
    },
    /// S3 refused (or did not answer) an Object Lock request.
    #[error("object store: {context}: {detail}")]
    ObjectLock { context: String, detail: String },
    #[error("a store task panicked or was cancelled")]
    Task(#[from] tokio::task::JoinError),
    /// custos's own record of an operation (an administrative action's audit record, a
    /// failed run's timeline event) could not be written, so the operation was not done
    /// either: the two commit together or not at all.
    #[error("custos could not write its own record of the operation, so nothing was changed")]
    RecordNotWritten {
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// Wraps the failure to append custos's own record of an operation.
    pub(crate) fn record_not_written(source: StoreError) -> Self {
        StoreError::RecordNotWritten { source: Box::new(source) }
    }
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to refusing the operation):
    /// the request may succeed if retried.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::SqlitePool(_) => true,
            StoreError::Postgres { source, .. } => matches!(
                source,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
            ),
            StoreError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. } => {
                matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            }
            _ => false,
        }
    }

    /// A short machine-readable name, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::AlreadyExists { .. } => "already_exists",
            StoreError::NotFound { .. } => "not_found",
            StoreError::Conflict { .. } | StoreError::LogConflict { .. } => "conflict",
            StoreError::Config(_) => "config",
            StoreError::Io { .. } => "io",
            StoreError::Migration { .. } | StoreError::MigrationChanged { .. } => "migration",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Sqlite { .. } | StoreError::SqlitePool(_) => "sqlite",
            StoreError::Postgres { .. } => "postgres",
            StoreError::Object { .. } | StoreError::ObjectLock { .. } => "object_store",
            StoreError::Task(_) => "task",
            StoreError::RecordNotWritten { .. } => "record_not_written",
        }
    }
}

pub(crate) trait SqliteContext<T> {
    fn ctx(self, context: &'static str) -> StoreResult<T>;
}

impl<T> SqliteContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> StoreResult<T> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}

pub(crate) trait PostgresContext<T> {
    fn ctx(self, context: &'static str) -> StoreResult<T>;
}

impl<T> PostgresContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> StoreResult<T> {
        self.map_err(|source| StoreError::Postgres { context, source })
    }
}
