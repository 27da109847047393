//! Scopes: what a token may do, and for which tenants.
//!
//! A scope is `<permission>#tenant/<tenant-id>` or `<permission>#tenant/*`, where the
//! permission is `<resource>:<action>` (`ingest:write`) or `admin`. `admin` grants every
//! permission for the tenants it names. Every route names the one permission it needs;
//! [`Scope::grants`] is the only place that decides.

use std::fmt;
use std::str::FromStr;

use crate::error::FieldError;
use crate::ids::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Report records and register components.
    IngestWrite,
    /// Read records, components and derived state.
    ObsRead,
    /// Append the platform's events to the tenant's timeline.
    TimelineWrite,
    /// Read the timeline, its checkpoints and proofs.
    TimelineRead,
    /// Append the platform's records to the tenant's audit log.
    AuditWrite,
    /// Read the audit log, its checkpoints and proofs.
    AuditRead,
    /// Upload case artifacts, report job capsules, seal evidence bundles, request
    /// attestations.
    EvidenceCreate,
    /// Read bundles' manifests and verification status, and attestations.
    EvidenceRead,
    /// Download bundles (each download is audited).
    EvidenceExport,
    /// Place and release holds on a case's evidence.
    EvidenceHold,
    /// Everything, including tenant configuration.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Permission::IngestWrite,
        Permission::ObsRead,
        Permission::TimelineWrite,
        Permission::TimelineRead,
        Permission::AuditWrite,
        Permission::AuditRead,
        Permission::EvidenceCreate,
        Permission::EvidenceRead,
        Permission::EvidenceExport,
        Permission::EvidenceHold,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::IngestWrite => "ingest:write",
            Permission::ObsRead => "obs:read",
            Permission::TimelineWrite => "timeline:write",
            Permission::TimelineRead => "timeline:read",
            Permission::AuditWrite => "audit:write",
            Permission::AuditRead => "audit:read",
            Permission::EvidenceCreate => "evidence:create",
            Permission::EvidenceRead => "evidence:read",
            Permission::EvidenceExport => "evidence:export",
            Permission::EvidenceHold => "evidence:hold",
            Permission::Admin => "admin",
        }
    }
}

/// Another name a permission is known by: `attest:read`, the name the product's mission
/// gives reading attestations, is `evidence:read` (which reads them).
pub const ALIASES: [(&str, Permission); 1] = [("attest:read", Permission::EvidenceRead)];

impl FromStr for Permission {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let alias = ALIASES.iter().find(|(name, _)| *name == s).map(|(_, p)| *p);
        alias.or_else(|| Permission::ALL.into_iter().find(|p| p.as_str() == s)).ok_or_else(|| {
            let known: Vec<_> = Permission::ALL.iter().map(|p| p.as_str()).collect();
            FieldError::new("scope", format!("unknown permission {s:?}; known: {}", known.join(", ")))
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TenantSelector {
    One(TenantId),
    /// Every tenant: for platform operators.
    All,
}

impl TenantSelector {
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if value == "*" { Ok(TenantSelector::All) } else { TenantId::parse(value).map(TenantSelector::One) }
    }

    pub fn matches(&self, tenant: &TenantId) -> bool {
        match self {
            TenantSelector::All => true,
            TenantSelector::One(own) => own == tenant,
        }
    }
}

impl fmt::Display for TenantSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantSelector::All => f.write_str("*"),
            TenantSelector::One(tenant) => f.write_str(tenant.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub permission: Permission,
    pub tenant: TenantSelector,
}

impl Scope {
    pub fn new(permission: Permission, tenant: TenantSelector) -> Self {
        Self { permission, tenant }
    }

    /// Parses `perm#tenant/<id|*>`. With `default_tenant`, a bare `perm` is bound to it
    /// (the CLI's `--tenant acme --scope obs:read`).
    pub fn parse(value: &str, default_tenant: Option<&TenantSelector>) -> Result<Self, FieldError> {
        let (permission, tenant) = match value.split_once('#') {
            Some((permission, binding)) => {
                let tenant = binding.strip_prefix("tenant/").ok_or_else(|| {
                    FieldError::new("scope", format!("{value:?}: the binding must be '#tenant/<id>' or '#tenant/*'"))
                })?;
                (permission, TenantSelector::parse(tenant)?)
            }
            None => match default_tenant {
                Some(tenant) => (value, tenant.clone()),
                None => {
                    return Err(FieldError::new(
                        "scope",
                        format!("{value:?} names no tenant; write '{value}#tenant/<id>' or '{value}#tenant/*'"),
                    ));
                }
            },
        };
        Ok(Self { permission: permission.parse()?, tenant })
    }

    /// Whether this scope allows `permission` on every tenant (`…#tenant/*`): what
    /// platform-wide operations (the public status page's incidents) need.
    pub fn grants_all(&self, permission: Permission) -> bool {
        (self.permission == permission || self.permission == Permission::Admin) && self.tenant == TenantSelector::All
    }

    /// Whether this scope allows `permission` on `tenant`.
    pub fn grants(&self, permission: Permission, tenant: &TenantId) -> bool {
        (self.permission == permission || self.permission == Permission::Admin) && self.tenant.matches(tenant)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#tenant/{}", self.permission, self.tenant)
    }
}

impl FromStr for Scope {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn attest_read_is_evidence_read() {
        let scope: Scope = "attest:read#tenant/acme".parse().unwrap();
        assert_eq!(scope.permission, Permission::EvidenceRead);
        assert_eq!(scope.to_string(), "evidence:read#tenant/acme");
        assert_eq!("attest:read".parse::<Permission>().unwrap(), Permission::EvidenceRead);
    }

    #[test]
    fn parses_and_grants() {
        let scope: Scope = "ingest:write#tenant/acme".parse().unwrap();
        assert!(scope.grants(Permission::IngestWrite, &acme()));
        assert!(!scope.grants(Permission::ObsRead, &acme()));
        assert!(!scope.grants(Permission::IngestWrite, &TenantId::parse("globex").unwrap()));

        let all: Scope = "obs:read#tenant/*".parse().unwrap();
        assert!(all.grants(Permission::ObsRead, &TenantId::parse("globex").unwrap()));
        assert!(!all.grants(Permission::IngestWrite, &acme()));

        let admin: Scope = "admin#tenant/acme".parse().unwrap();
        assert!(admin.grants(Permission::IngestWrite, &acme()));
        assert!(admin.grants(Permission::ObsRead, &acme()));
        assert!(!admin.grants(Permission::ObsRead, &TenantId::parse("globex").unwrap()));
    }

    #[test]
    fn bare_permission_needs_a_default_tenant() {
        assert!("obs:read".parse::<Scope>().is_err());
        let scope = Scope::parse("obs:read", Some(&TenantSelector::All)).unwrap();
        assert_eq!(scope.to_string(), "obs:read#tenant/*");
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        for bad in ["obs:delete#tenant/acme", "obs:read#acme", "obs:read#tenant/", "obs:read#tenant/ACME", ""] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(perm in 0usize..Permission::ALL.len(), tenant in "(\\*|[a-z0-9][a-z0-9-]{0,20})") {
            let scope = Scope::new(Permission::ALL[perm], TenantSelector::parse(&tenant).unwrap());
            prop_assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        }
    }
}
