//! The edge: the only code that knows axum, hyper and TLS ([`tls`]) and the AdmissionReview wire
//! format ([`review`]). Routes over hyper-util and tokio-rustls, graceful drain. Plain HTTP is only
//! ever used for the optional metrics-only listener (`TELEMETRY_LISTEN_ADDRESS`), as in
//! Bank-Vaults.

pub mod tls;
pub mod caller;
pub mod conn;
pub mod review;

pub use caller::AllowedNames;
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

async fn secrets(State(ctx): State<Arc<Context>>, Extension(caller): Extension<Caller>, body: Bytes) -> Response {
    json_response(review::review_object(&ctx, &body, Kind::Secret, caller.verified).await)
}

async fn configmaps(State(ctx): State<Arc<Context>>, Extension(caller): Extension<Caller>, body: Bytes) -> Response {
    json_response(review::review_object(&ctx, &body, Kind::ConfigMap, caller.verified).await)
}

async fn objects(State(ctx): State<Arc<Context>>, Extension(caller): Extension<Caller>, body: Bytes) -> Response {
    json_response(review::review_object(&ctx, &body, Kind::Object, caller.verified).await)
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
    /// `TLS_CLIENT_ALLOWED_NAMES`: and whose certificate names one of these.
    pub client_names: AllowedNames,
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
        body_budget: Arc::new(tokio::sync::Semaphore::new(conn::BODY_BUDGET_KIB as usize)),
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

/// How the HTTPS listener knows its callers.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// Which verified client certificates count as the API server.
    pub callers: Arc<AllowedNames>,
    /// Only such callers are served admissions (`TLS_CLIENT_CA_FILE` is set): others get a
    /// small budget of connections of their own and a short idle time, so that however many
    /// connections they open, the API server always finds a free one.
    pub require_client_cert: bool,
}

/// Connections of callers without an allowed certificate, when one is required: a share of
/// `max_connections` (they can only be answered 401, `/healthz` or `/metrics`), closed after
/// this long without a request.
fn unverified_budget(limits: &Limits) -> (usize, Duration) {
    ((limits.max_connections / 8).max(2), limits.idle_timeout.min(Duration::from_secs(5)))
}

/// A TLS handshake must finish within this (and within `header_read_timeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `router` on `listener`, over TLS when `tls` is given, within `limits`, until `shutdown`
/// resolves; then lets every connection finish its requests (up to 10 s).
///
/// Three budgets, so that callers without a certificate cannot hold what the API server needs:
/// handshakes in progress (at most `max_connections`, each within `HANDSHAKE_TIMEOUT`),
/// connections of verified callers (or of everyone when no certificate is required: at most
/// `max_connections`), and connections of unverified callers when one is required
/// (`unverified_budget`: beyond it they are closed at once).
pub async fn serve(listener: TcpListener, tls: Option<Tls>, router: Router, limits: Limits, shutdown: impl std::future::Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Some(limits.idle_timeout / 3))
        .keep_alive_timeout(Duration::from_secs(20));
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX).max(1);
    let (unverified_max, unverified_idle) = unverified_budget(&limits);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(max as usize));
    let served = Arc::new(tokio::sync::Semaphore::new(max as usize));
    let unverified = Arc::new(tokio::sync::Semaphore::new(unverified_max));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        // At the cap, new connections wait in the kernel's backlog instead of taking a descriptor.
        let handshake = tokio::select! {
            permit = handshakes.clone().acquire_owned() => match permit {
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
        let (builder, tls, router, stopping) = (builder.clone(), tls.clone(), router.clone(), stopping.clone());
        let (served, unverified) = (served.clone(), unverified.clone());
        tokio::spawn(async move {
            let activity = Activity::new();
            let service = |verified: bool| TowerToHyperService::new(router.layer(Extension(Caller { verified })).layer(Extension(activity.clone())));
            let result = match tls {
                Some(tls) => {
                    let acceptor = TlsAcceptor::from(tls.config.clone());
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT.min(limits.header_read_timeout), acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                    drop(handshake);
                    let leaf = stream.get_ref().1.peer_certificates().and_then(|c| c.first());
                    let verified = leaf.is_some_and(|leaf| tls.callers.allows(leaf));
                    let (permit, idle) = if verified || !tls.require_client_cert {
                        match served.acquire_owned().await {
                            Ok(p) => (p, limits.idle_timeout),
                            Err(_) => return,
                        }
                    } else {
                        match unverified.try_acquire_owned() {
                            Ok(p) => (p, unverified_idle),
                            Err(_) => {
                                tracing::debug!(%peer, "closed: too many connections without an allowed client certificate");
                                return;
                            }
                        }
                    };
                    let _permit = permit;
                    run_connection(builder.serve_connection(TokioIo::new(stream), service(verified)), &activity, idle, stopping).await
                }
                None => {
                    drop(handshake);
                    let Ok(_permit) = served.acquire_owned().await else { return };
                    run_connection(builder.serve_connection(TokioIo::new(stream), service(false)), &activity, limits.idle_timeout, stopping).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    let _ = stop.send(true);
    let drained = async {
        let _ = served.acquire_many(max).await;
        let _ = unverified.acquire_many(u32::try_from(unverified_max).unwrap_or(u32::MAX)).await;
    };
    if tokio::time::timeout(Duration::from_secs(10), drained).await.is_err() {
        tracing::warn!("requests still in flight after 10 s; stopping anyway");
    }
}

/// Runs one connection; shuts it down gracefully (requests in flight finish) when the server
/// stops or when it has had no request in flight for `idle` (HTTP/2 has no idle timeout of its
/// own). A graceful HTTP/2 shutdown waits for the client to answer a PING, which a hostile
/// client never does: the connection is dropped after [`DRAIN`] (idle: after [`IDLE_DRAIN`]).
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
    let mut closing: Option<tokio::time::Instant> = None;
    if *stopping.borrow() {
        closing = Some(tokio::time::Instant::now() + DRAIN);
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            changed = stopping.changed(), if closing.is_none() => {
                if changed.is_err() || *stopping.borrow() {
                    closing = Some(tokio::time::Instant::now() + DRAIN);
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep(check), if closing.is_none() => {
                if activity.idle_for(idle) {
                    closing = Some(tokio::time::Instant::now() + IDLE_DRAIN);
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => return Ok(()),
        }
    }
}

/// How long a connection may take to finish its requests once the server stops.
const DRAIN: Duration = Duration::from_secs(10);
/// How long an idle connection (nothing in flight) may take to close once told to.
const IDLE_DRAIN: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_address_accepts_go_form() {
        assert_eq!(bind_address(":8443"), "0.0.0.0:8443");
        assert_eq!(bind_address("127.0.0.1:9443"), "127.0.0.1:9443");
    }
}
