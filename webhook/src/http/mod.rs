//! The HTTPS server: axum routes over hyper-util and tokio-rustls. The certificate is re-read
//! when its files change (Kubernetes swaps a `..data` symlink in secret volumes); a new pair that
//! does not load is logged and the old one kept. Plain HTTP is only ever used for the optional
//! metrics-only listener (`TELEMETRY_LISTEN_ADDRESS`), as in Bank-Vaults.

pub mod review;

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
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Kubernetes objects are at most ~1.5 MiB; a review carries the object and the old object.
const BODY_LIMIT: usize = 8 * 1024 * 1024;

fn load_pair(cert: &Path, key: &Path) -> Result<(CertifiedKey, Vec<u8>), String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>().map_err(|e| format!("{}: not a PEM certificate: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| format!("certificate and key do not fit: {e}"))?;
    let fingerprint = [cert_pem, key_pem].concat();
    Ok((certified, fingerprint))
}

/// The current certificate, swapped atomically on reload.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    loaded: RwLock<Vec<u8>>,
    cert: PathBuf,
    key: PathBuf,
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>, String> {
        let (certified, fingerprint) = load_pair(cert, key)?;
        Ok(Arc::new(CertStore { current: RwLock::new(Arc::new(certified)), loaded: RwLock::new(fingerprint), cert: cert.into(), key: key.into() }))
    }

    /// Re-reads the files; `Ok(true)` when a new pair is now served.
    pub fn reload(&self) -> Result<bool, String> {
        let unchanged = |fp: &[u8]| self.loaded.read().map(|l| l.as_slice() == fp).unwrap_or(false);
        // Cheap check first: same bytes, nothing to do (reading two small files every few seconds).
        let cert = std::fs::read(&self.cert).unwrap_or_default();
        let key = std::fs::read(&self.key).unwrap_or_default();
        if unchanged(&[cert, key].concat()) {
            return Ok(false);
        }
        let (certified, fingerprint) = load_pair(&self.cert, &self.key)?;
        if let (Ok(mut c), Ok(mut l)) = (self.current.write(), self.loaded.write()) {
            *c = Arc::new(certified);
            *l = fingerprint;
        }
        Ok(true)
    }

    /// Polls the files every `every`; a bad new pair is reported once per change.
    pub fn watch(self: Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::time::sleep(every).await;
                match self.reload() {
                    Ok(true) => {
                        last_error.clear();
                        tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    }
                    Ok(false) => {}
                    Err(e) if e != last_error => {
                        tracing::warn!("new certificate not loaded, keeping the old one: {e}");
                        last_error = e;
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

pub fn tls_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

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
