//! Starting a real daemon inside a test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard::config::Config;
use switchyard::gateway::{AppState, serve_on};

/// A daemon serving on a loopback port until dropped.
pub struct Daemon {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its state, to inspect the registry or the catalog.
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Starts a daemon on `config` (its listen address is ignored).
    pub async fn start(config: Config) -> Daemon {
        let state = Arc::new(AppState::new(config).await.expect("the daemon starts"));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                serve_on(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Daemon {
            url,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting, waits for requests in flight.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The demo config with its catalog on the simulated provider, made instant.
pub fn demo() -> Config {
    let text = switchyard::config::DEMO_TOML
        .replace("latency_ms = 20", "latency_ms = 0")
        .replace("tokens_per_second = 400", "tokens_per_second = 0");
    Config::parse(&text).unwrap()
}
