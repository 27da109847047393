//! `custos serve`: the API on the configured listener until SIGINT or SIGTERM, then a
//! graceful drain.

use std::sync::Arc;

use anyhow::Context;
use custos_server::AppState;
use custos_store::Store;
use tokio::net::TcpListener;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::settings;

pub async fn run(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let store = settings::open_store(global).await?;
    let listener = bind(args).await?;
    serve_until_signal(listener, store, settings::server_config(global, args)).await
}

pub async fn bind(args: &ServeArgs) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %address, "listening");
    Ok(listener)
}

pub async fn serve_until_signal(
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: custos_server::ServerConfig,
) -> anyhow::Result<()> {
    let state = AppState::new(store, config);
    custos_server::serve(listener, state, shutdown_signal()).await.context("serving HTTP")?;
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
