//! `custos serve`: the API on the configured listener until SIGINT or SIGTERM, then a
//! graceful drain.

use anyhow::Context;
use custos_server::AppState;
use tokio::net::TcpListener;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::settings;

pub async fn run(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let store = settings::open_store(global).await?;
    let privileged = settings::check_database_role(&*store, args.allow_privileged_database_role).await?;
    let listener = bind(args).await?;
    let objects = settings::open_objects(global, args).await?;
    let key_path = global.signing_key_path();
    let key = custos_server::keys::load_or_create(&*store, &key_path)
        .await
        .with_context(|| format!("setting up the checkpoint signing key {}", key_path.display()))?;
    tracing::info!(key_id = key.key_id(), deployment = global.deployment.as_str(), "checkpoint signing key ready");
    let mut config = settings::server_config(global, args)?;
    config.privileged_database_role = privileged;
    let state = AppState::new(store, config).with_objects(objects);
    custos_server::jobs::spawn_monitor(state.clone(), args.job_monitor_period);
    custos_server::ledger::spawn_checkpointer(state.clone(), args.checkpoint_period);
    custos_server::ledger::spawn_retention(state.clone(), args.retention_period);
    custos_server::health::spawn_object_probe(state.clone(), args.object_store_probe_period);
    custos_server::status::spawn_evaluator(state.clone(), args.status_period);
    serve_until_signal(listener, args, state).await
}

/// Says how long freed memory stays resident ([`crate::allocator`]).
fn log_allocator() {
    use crate::allocator::{PURGE_DELAY_VARIABLE, PurgeDelay};
    match crate::allocator::purge_delay() {
        Some(PurgeDelay::Set(ms)) => tracing::info!(purge_delay_ms = ms, source = "custos", "allocator configured"),
        Some(PurgeDelay::FromEnvironment(ms)) => {
            tracing::info!(purge_delay_ms = ms, source = PURGE_DELAY_VARIABLE, "allocator configured");
        }
        Some(PurgeDelay::Unrecognised(ms)) => tracing::warn!(
            purge_delay_ms = ms,
            "the bundled allocator's options changed: its purge delay was left at its default, so the server may \
             keep more freed memory resident (set MIMALLOC_PURGE_DELAY=50)"
        ),
        // Not started through `main` (a test harness): mimalloc's own settings hold.
        None => {}
    }
}

pub async fn bind(args: &ServeArgs) -> anyhow::Result<TcpListener> {
    bind_address(args.listen, "listening").await
}

async fn bind_address(address: std::net::SocketAddr, what: &'static str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %bound, "{what}");
    Ok(listener)
}

/// Serves the API on `listener` (and `/metrics` on `--metrics-listen` when set) until
/// SIGINT or SIGTERM, then drains both.
pub async fn serve_until_signal(listener: TcpListener, args: &ServeArgs, state: AppState) -> anyhow::Result<()> {
    log_allocator();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let metrics_server = match args.metrics_listen {
        Some(address) => {
            let listener = bind_address(address, "metrics listening").await?;
            let router = custos_server::metrics_router(state.clone());
            Some(tokio::spawn(custos_server::serve_router(listener, router, until_stopped())))
        }
        None => None,
    };
    let draining = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Readiness fails from here on, while in-flight requests finish.
        draining.start_draining();
        let _ = stop.send(true);
    });
    custos_server::serve(listener, state, until_stopped()).await.context("serving HTTP")?;
    if let Some(server) = metrics_server {
        server.await.context("the metrics server stopped abnormally")?.context("serving /metrics")?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}
