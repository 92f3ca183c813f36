//! The edge: the only code that knows axum, hyper and TLS ([`tls`]) and the AdmissionReview wire
//! format ([`review`]). Routes over hyper-util and tokio-rustls, graceful drain. Plain HTTP is only
//! ever used for the optional metrics-only listener (`TELEMETRY_LISTEN_ADDRESS`), as in
//! Bank-Vaults.

pub mod tls;
pub mod review;

pub use tls::{CertStore, tls_config};

use crate::admit::Context;
use crate::mutate::object::Kind;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use review::Answer;
use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Kubernetes objects are at most ~1.5 MiB; a review carries the object and the old object.
const BODY_LIMIT: usize = 8 * 1024 * 1024;

fn json_response((status, body): Answer) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn pods(State(ctx): State<Arc<Context>>, body: Bytes) -> Response {
    json_response(review::review_pod(&ctx, &body).await)
}

async fn secrets(State(ctx): State<Arc<Context>>, body: Bytes) -> Response {
    json_response(review::review_object(&ctx, &body, Kind::Secret).await)
}

async fn configmaps(State(ctx): State<Arc<Context>>, body: Bytes) -> Response {
    json_response(review::review_object(&ctx, &body, Kind::ConfigMap).await)
}

async fn objects(State(ctx): State<Arc<Context>>, body: Bytes) -> Response {
    json_response(review::review_object(&ctx, &body, Kind::Object).await)
}

async fn metrics(State(ctx): State<Arc<Context>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], ctx.metrics.encode()).into_response()
}

/// Where and how the webhook serves.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen_address: String,
    /// Also serve `/metrics` there, over plain HTTP.
    pub telemetry_listen_address: Option<String>,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// How often the certificate files are checked for a change.
    pub tls_reload_interval: Duration,
}

/// The socket address to bind: Go's `:8443` means every interface.
pub fn bind_address(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/pods", post(pods))
        .route("/secrets", post(secrets))
        .route("/configmaps", post(configmaps))
        .route("/objects", post(objects))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(ctx)
}

pub fn metrics_router(ctx: Arc<Context>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(ctx)
}

/// Serves `router` on `listener`, over TLS when `tls` is given, until `shutdown` resolves; then
/// waits (up to 10 s) for requests in flight.
pub async fn serve(listener: TcpListener, tls: Option<Arc<ServerConfig>>, router: Router, shutdown: impl std::future::Future<Output = ()>) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match acceptor {
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => watcher.watch(builder.serve_connection(TokioIo::new(tls), service).into_owned()).await,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                },
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after 10 s; stopping anyway");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_address_accepts_go_form() {
        assert_eq!(bind_address(":8443"), "0.0.0.0:8443");
        assert_eq!(bind_address("127.0.0.1:9443"), "127.0.0.1:9443");
    }
}
