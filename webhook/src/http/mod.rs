//! The edge: the only code that knows axum, hyper and TLS ([`tls`]) and the AdmissionReview wire
//! format ([`review`]). Routes over hyper-util and tokio-rustls, graceful drain. Plain HTTP is only
//! ever used for the optional metrics-only listener (`TELEMETRY_LISTEN_ADDRESS`), as in
//! Bank-Vaults.

pub mod tls;
pub mod conn;
pub mod review;

pub use conn::Limits;
pub use tls::{CertStore, tls_config};

use crate::admit::Context;
use crate::mutate::object::Kind;
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conn::{AcceptErrors, Activity, Admission, Caller};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use review::Answer;
use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

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
    /// `TLS_CLIENT_CA_FILE`: admission routes answer only callers with a certificate it signed.
    pub client_ca_file: Option<String>,
    pub limits: Limits,
}

/// The socket address to bind: Go's `:8443` means every interface.
pub fn bind_address(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

/// The routes. The admission ones are guarded ([`conn::guard`]): a verified client certificate
/// when `require_client_cert`, a request slot, the request timeout and the body limit; `/healthz`
/// (the kubelet's probes carry no client certificate) and `/metrics` are not.
pub fn router(ctx: Arc<Context>, limits: &Limits, require_client_cert: bool) -> Router {
    let admission = Admission {
        require_client_cert,
        slots: Arc::new(tokio::sync::Semaphore::new(limits.max_requests)),
        timeout: limits.request_timeout,
        body_limit: limits.body_limit,
    };
    let reviews = Router::new()
        .route("/pods", post(pods))
        .route("/secrets", post(secrets))
        .route("/configmaps", post(configmaps))
        .route("/objects", post(objects))
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .route_layer(axum::middleware::from_fn_with_state(admission, conn::guard));
    Router::new().merge(reviews).route("/healthz", get(|| async { "ok" })).route("/metrics", get(metrics)).with_state(ctx)
}

pub fn metrics_router(ctx: Arc<Context>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(ctx)
}

/// Serves `router` on `listener`, over TLS when `tls` is given, within `limits`, until `shutdown`
/// resolves; then lets every connection finish its requests (up to 10 s).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Some(limits.idle_timeout / 3))
        .keep_alive_timeout(Duration::from_secs(20));
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX).max(1);
    let connections = Arc::new(tokio::sync::Semaphore::new(max as usize));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        // At the cap, new connections wait in the kernel's backlog instead of taking a descriptor.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    accept_errors.succeeded();
                    a
                }
                Err(e) => {
                    accept_errors.failed(&e);
                    tokio::time::sleep(accept_errors.backoff).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, acceptor, router, stopping) = (builder.clone(), acceptor.clone(), router.clone(), stopping.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Activity::new();
            let service = |verified: bool| TowerToHyperService::new(router.layer(Extension(Caller { verified })).layer(Extension(activity.clone())));
            let result = match acceptor {
                Some(acceptor) => match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let verified = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                        let connection = builder.serve_connection(TokioIo::new(tls), service(verified));
                        run_connection(connection, &activity, limits.idle_timeout, stopping).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                },
                None => {
                    run_connection(builder.serve_connection(TokioIo::new(stream), service(false)), &activity, limits.idle_timeout, stopping).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(10), connections.acquire_many(max)).await.is_err() {
        tracing::warn!("requests still in flight after 10 s; stopping anyway");
    }
}

/// Runs one connection; shuts it down gracefully (requests in flight finish) when the server
/// stops or when it has had no request in flight for `idle` (HTTP/2 has no idle timeout of its own).
async fn run_connection<I>(
    connection: auto::Connection<'_, I, TowerToHyperService<Router>, TokioExecutor>,
    activity: &Activity,
    idle: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::pin!(connection);
    let check = (idle / 4).max(Duration::from_millis(100));
    let mut closing = *stopping.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            changed = stopping.changed(), if !closing => {
                if changed.is_err() || *stopping.borrow() {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep(check), if !closing => {
                if activity.idle_for(idle) {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
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
