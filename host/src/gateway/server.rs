//! The listener: client connections within bounds.
//!
//! axum's `serve` has no header-read timeout, no idle timeout and no cap on
//! connections: 100 connections that sent a request line and one header
//! were all still open 45 s later. This accept loop drives hyper's
//! connections itself, with
//!
//! - a cap on open connections ([`ServerConfig::max_connections`]): past
//!   it, new connections wait in the kernel's accept queue;
//! - hyper's header-read timeout ([`ServerConfig::header_timeout_ms`]),
//!   which on HTTP/1.1 runs from the connection's start and again from the
//!   end of each answer, so it bounds both a slow head and an idle
//!   kept-alive connection;
//! - HTTP/2 keep-alive pings, so a dead HTTP/2 peer is noticed;
//! - graceful shutdown: stop accepting, let requests in flight finish, for
//!   at most [`ServerConfig::shutdown_grace_ms`].

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use axum::response::{IntoResponse, Response};
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::Service;

use super::reload::Live;
use crate::config::ServerConfig;
use crate::provider::Format;

/// The admin endpoint that reloads the configuration. It is answered here,
/// beside the routes, since it replaces the state the routes belong to.
pub const RELOAD_PATH: &str = "/v1/admin/reload";

/// How long accepting pauses after the process ran out of file descriptors
/// (or another accept error), rather than spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// connections' requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    bounds: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(bounds.header_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot?,
            () = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Nagle's algorithm would hold small SSE events and responses back.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let live = live.clone();
        // Each request goes to the state current when it arrives, so a
        // kept-alive connection sees a reload at its next request.
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let live = live.clone();
            async move {
                if request.uri().path() == RELOAD_PATH {
                    return Ok(reload_endpoint(&live, request).await);
                }
                TowerToHyperService::new(live.router()).call(request).await
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(bounds.shutdown_grace_ms);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after the {} ms shutdown grace period are cut off",
            bounds.shutdown_grace_ms
        );
    }
    Ok(())
}

/// `POST /v1/admin/reload`: reloads the config file (admin key required
/// when one is set); 200 with what changed, or 422 with why nothing did.
async fn reload_endpoint(live: &Live, request: Request<Incoming>) -> Response {
    use axum::http::StatusCode;
    if request.method() != axum::http::Method::POST {
        return super::error::ApiError::new(
            super::error::ErrorKind::MethodNotAllowed,
            "use POST to reload the configuration",
        )
        .into_response(Format::OpenAi);
    }
    if let Err(error) = live.state().auth.check_admin(request.headers()) {
        return error.into_response(Format::OpenAi);
    }
    match live.reload("admin key").await {
        Ok(done) => (StatusCode::OK, axum::Json(done)).into_response(),
        Err(e) => {
            let error = super::error::ApiError::invalid(format!(
                "the configuration was not reloaded, the previous one keeps serving: {e:#}"
            ));
            let mut response = error.into_response(Format::OpenAi);
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            response
        }
    }
}
