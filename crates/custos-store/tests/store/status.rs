//! The status page's storage on both backends: state changes recorded only when they
//! change, incidents and their updates, one open automatic incident per signal even
//! under concurrent openers, maintenance windows, and scopes that never see each other.

use std::sync::Arc;

use custos_model::status::{ComponentStatus, Impact, IncidentStatus, MaintenanceInput};
use custos_model::{TenantId, Timestamp};
use custos_store::{
    IncidentRecord, IncidentSource, IncidentUpdate, MaintenanceRecord, NewIncidentUpdate, StatusScope, Store,
    StoreError, Tenant,
};

use crate::support::{postgres, sqlite};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { let f = super::sqlite().await; super::$name(f.store.clone()).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { let f = super::postgres().await; super::$name(f.store.clone()).await })*
        }
    };
}

both_backends!(
    only_changes_are_recorded_and_history_covers_the_window,
    incidents_keep_their_updates_and_resolve,
    one_open_automatic_incident_per_signal_under_concurrent_openers,
    maintenance_windows_are_listed_until_cancelled,
    scopes_never_see_each_other,
);

fn at(seconds: i64) -> Timestamp {
    Timestamp::parse("t", "2026-11-22T12:00:00Z").unwrap().saturating_add_micros(seconds * 1_000_000)
}

async fn tenant(store: &dyn Store, id: &str) -> StatusScope {
    let id = TenantId::parse(id).unwrap();
    store.create_tenant(&Tenant { id: id.clone(), name: None, retention_days: 30, created_at: at(0) }).await.unwrap();
    StatusScope::Tenant(id)
}

fn observed(pairs: &[(&str, ComponentStatus)]) -> Vec<(String, ComponentStatus)> {
    pairs.iter().map(|(c, s)| ((*c).to_owned(), *s)).collect()
}

fn incident(id: &str, auto_key: Option<&str>, created: i64) -> IncidentRecord {
    IncidentRecord {
        id: id.to_owned(),
        title: format!("incident {id}"),
        status: IncidentStatus::Investigating,
        impact: Impact::Minor,
        components: vec!["ingestion".into()],
        source: if auto_key.is_some() { IncidentSource::Auto } else { IncidentSource::Manual },
        auto_key: auto_key.map(str::to_owned),
        created_at: at(created),
        updated_at: at(created),
        resolved_at: None,
        updates: vec![IncidentUpdate {
            seq: 1,
            at: at(created),
            status: IncidentStatus::Investigating,
            impact: Impact::Minor,
            message: "looking into it".into(),
        }],
    }
}

fn update(status: IncidentStatus, seconds: i64) -> NewIncidentUpdate {
    NewIncidentUpdate { status, impact: Impact::Major, message: format!("now {}", status.as_str()), at: at(seconds) }
}

async fn only_changes_are_recorded_and_history_covers_the_window(store: Arc<dyn Store>) {
    use ComponentStatus::*;
    let scope = StatusScope::Platform;
    let first = observed(&[("api", Operational), ("ingestion", Operational)]);
    assert_eq!(store.record_status(&scope, &first, at(0)).await.unwrap(), 2, "first states are changes");
    assert_eq!(store.record_status(&scope, &first, at(60)).await.unwrap(), 0, "the same states are not");
    let degraded = observed(&[("api", Operational), ("ingestion", DegradedPerformance)]);
    assert_eq!(store.record_status(&scope, &degraded, at(120)).await.unwrap(), 1);
    assert_eq!(store.record_status(&scope, &first, at(300)).await.unwrap(), 1);

    // From t=200: each component's last state before it, then what changed after.
    let changes = store.status_changes(&scope, at(200)).await.unwrap();
    let seen: Vec<_> = changes.iter().map(|c| (c.component.as_str(), c.at, c.status)).collect();
    assert_eq!(
        seen,
        vec![
            ("api", at(0), Operational),
            ("ingestion", at(120), DegradedPerformance),
            ("ingestion", at(300), Operational)
        ]
    );
    assert_eq!(store.status_changes(&scope, at(0)).await.unwrap().len(), 4);
}

async fn incidents_keep_their_updates_and_resolve(store: Arc<dyn Store>) {
    let scope = StatusScope::Platform;
    store.create_incident(&scope, &incident("i-old", None, 0)).await.unwrap();
    store.create_incident(&scope, &incident("i-new", None, 100)).await.unwrap();
    let identified = store.update_incident(&scope, "i-new", &update(IncidentStatus::Identified, 200)).await.unwrap();
    assert_eq!(
        (identified.status, identified.impact, identified.resolved_at),
        (IncidentStatus::Identified, Impact::Major, None)
    );
    let resolved = store.update_incident(&scope, "i-old", &update(IncidentStatus::Resolved, 300)).await.unwrap();
    assert_eq!(resolved.resolved_at, Some(at(300)));
    assert_eq!(resolved.updates.iter().map(|u| u.seq).collect::<Vec<_>>(), vec![1, 2]);

    // Read back: the same as returned, newest first, updates in order.
    let stored = store.incident(&scope, "i-old").await.unwrap().unwrap();
    assert_eq!(stored, resolved);
    let listed = store.incidents(&scope, at(0)).await.unwrap();
    assert_eq!(listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["i-new", "i-old"]);
    assert_eq!(listed[0].updates.len(), 2);
    assert_eq!(listed[0].updates[1].message, "now identified");
    // Resolved before the cut-off: no longer listed; open ones always are.
    let recent = store.incidents(&scope, at(301)).await.unwrap();
    assert_eq!(recent.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["i-new"]);

    let missing = store.update_incident(&scope, "nope", &update(IncidentStatus::Resolved, 400)).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
    assert!(store.incident(&scope, "nope").await.unwrap().is_none());
}

async fn one_open_automatic_incident_per_signal_under_concurrent_openers(store: Arc<dyn Store>) {
    let scope = tenant(&*store, "acme").await;
    let openers: Vec<_> = (0..8)
        .map(|i| {
            let (store, scope) = (store.clone(), scope.clone());
            tokio::spawn(
                async move { store.create_incident(&scope, &incident(&format!("a-{i}"), Some("rules"), 10)).await },
            )
        })
        .collect();
    let mut opened = 0;
    for opener in openers {
        match opener.await.unwrap() {
            Ok(()) => opened += 1,
            Err(StoreError::AlreadyExists { what, id }) => assert_eq!((what, id.as_str()), ("open incident", "rules")),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(opened, 1, "exactly one replica opens it");
    let open = store.incidents(&scope, at(0)).await.unwrap();
    assert_eq!(open.len(), 1);
    // Resolved, the signal may open a new one; another signal is independent.
    store.update_incident(&scope, &open[0].id, &update(IncidentStatus::Resolved, 100)).await.unwrap();
    store.create_incident(&scope, &incident("b-1", Some("rules"), 200)).await.unwrap();
    store.create_incident(&scope, &incident("b-2", Some("connector:okta"), 200)).await.unwrap();
    assert_eq!(store.incidents(&scope, at(0)).await.unwrap().len(), 3);
}

fn window(title: &str, recurring: bool) -> MaintenanceRecord {
    let input = if recurring {
        MaintenanceInput {
            title: title.to_owned(),
            components: vec![],
            starts_at: None,
            ends_at: None,
            cron: Some("0 2 * * SUN".into()),
            timezone: Some("Europe/Paris".into()),
            duration_minutes: Some(90),
        }
    } else {
        MaintenanceInput {
            title: title.to_owned(),
            components: vec!["api".into()],
            starts_at: Some(at(3600)),
            ends_at: Some(at(7200)),
            cron: None,
            timezone: None,
            duration_minutes: None,
        }
    };
    MaintenanceRecord {
        id: format!("m-{title}"),
        window: input.validate(&["api", "ingestion"]).unwrap(),
        created_at: at(0),
    }
}

async fn maintenance_windows_are_listed_until_cancelled(store: Arc<dyn Store>) {
    let scope = StatusScope::Platform;
    store.create_maintenance(&scope, &window("upgrade", false)).await.unwrap();
    store.create_maintenance(&scope, &window("patching", true)).await.unwrap();
    let again = store.create_maintenance(&scope, &window("upgrade", false)).await.unwrap_err();
    assert!(matches!(again, StoreError::AlreadyExists { .. }), "{again}");
    let listed = store.maintenance_windows(&scope).await.unwrap();
    assert_eq!(listed.len(), 2);
    let recurring = listed.iter().find(|w| w.id == "m-patching").unwrap();
    assert_eq!(recurring.window.input, window("patching", true).window.input, "read back as written");
    assert!(recurring.window.active_at(Timestamp::parse("t", "2026-11-22T01:30:00Z").unwrap()).is_some());
    let one_off = listed.iter().find(|w| w.id == "m-upgrade").unwrap();
    assert!(one_off.window.active_at(at(3600)).is_some() && one_off.window.covers("api"));

    store.cancel_maintenance(&scope, "m-upgrade", at(10)).await.unwrap();
    let cancelled_again = store.cancel_maintenance(&scope, "m-upgrade", at(11)).await.unwrap_err();
    assert!(matches!(cancelled_again, StoreError::NotFound { .. }));
    let listed = store.maintenance_windows(&scope).await.unwrap();
    assert_eq!(listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), vec!["m-patching"]);
}

async fn scopes_never_see_each_other(store: Arc<dyn Store>) {
    let acme = tenant(&*store, "acme").await;
    let globex = tenant(&*store, "globex").await;
    let platform = StatusScope::Platform;
    store.record_status(&acme, &observed(&[("connector:okta", ComponentStatus::MajorOutage)]), at(0)).await.unwrap();
    store.create_incident(&acme, &incident("acme-1", None, 0)).await.unwrap();
    store.create_maintenance(&acme, &window("acme-window", true)).await.unwrap();
    for scope in [&globex, &platform] {
        assert!(store.status_changes(scope, at(0)).await.unwrap().is_empty());
        assert!(store.incidents(scope, at(0)).await.unwrap().is_empty());
        assert!(store.incident(scope, "acme-1").await.unwrap().is_none());
        assert!(store.maintenance_windows(scope).await.unwrap().is_empty());
        let err = store.update_incident(scope, "acme-1", &update(IncidentStatus::Resolved, 5)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }));
        assert!(store.cancel_maintenance(scope, "m-acme-window", at(5)).await.is_err());
    }
    // The same ids in another scope are another incident.
    store.create_incident(&globex, &incident("acme-1", None, 0)).await.unwrap();
    assert_eq!(store.incidents(&acme, at(0)).await.unwrap().len(), 1);
}
