//! Wires storage, Raft, network and API together and runs a node until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::election::ElectionApp;
use crate::network::Network;
use crate::store::{self, Application, Raft};

/// Runs a node with the election application until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    run_with(config, Arc::new(ElectionApp), shutdown).await
}

/// Runs a node with the given application until `shutdown` resolves.
pub async fn run_with(
    config: Config,
    app: Arc<dyn Application>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let node_key = crate::head::load_or_create(&config.data_dir, config.node_key_file.as_deref())?;
    let store = store::open(&config.data_dir.join("db"), app).context("opening the store")?;
    let raft_config = Arc::new(config.raft_config()?);
    let network = Network::new(config.cluster_secret.as_bytes())?.with_peer_via(config.peer_via()?);
    let raft = Raft::new(config.id, raft_config, network, store.log, store.sm)
        .await
        .context("starting Raft")?;
    crate::metrics::watch_raft(&raft);
    let secret = Arc::new(config.cluster_secret.as_bytes().to_vec());
    crate::head::spawn_registration(
        raft.clone(),
        store.handle.clone(),
        config.id,
        node_key.clone(),
        secret.clone(),
    );

    let state = AppState {
        id: config.id,
        advertise: config.advertise_addr().to_string(),
        raft: raft.clone(),
        store: store.handle,
        secret,
        heads: Arc::new(crate::head::Heads::new(config.id, node_key)),
        operators: Arc::new(config.operators.clone()),
        peers: Arc::new(config.peers.clone()),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?,
        contexts: Arc::new(Default::default()),
        verifier: Arc::new(crate::election::batch::BatchVerifier::start()),
        challenges: Arc::new(Default::default()),
    };
    let router = api::router(state, config.max_body_bytes);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(id = config.id, listen = %config.listen, advertise = %config.advertise_addr(), "urna-node serving");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving HTTP")?;
    tracing::info!("shutting down Raft");
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "Raft shutdown");
    }
    Ok(())
}
