//! Schema introspection and the migration list format shared by both backends.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The shape of a database schema, compared across backends by the equivalence test.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaDescription {
    pub tables: BTreeMap<String, TableDescription>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableDescription {
    /// `(name, nullable)` in declaration order.
    pub columns: Vec<(String, bool)>,
    pub primary_key: Vec<String>,
    /// Secondary indexes by name: `(columns, unique)`.
    pub indexes: BTreeMap<String, (Vec<String>, bool)>,
}

/// One forward-only migration. Versions are applied in order, each once; the stored
/// checksum detects a migration edited after it ran.
#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}
