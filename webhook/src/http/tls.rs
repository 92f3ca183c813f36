//! The serving certificate: re-read when its files change (Kubernetes swaps a `..data` symlink in
//! secret volumes); a new pair that does not load is logged and the old one kept.

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Why the webhook's own TLS files cannot be used: the file, then what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{}: not a PEM {what}: {error}", path.display())]
    NotPem { path: PathBuf, what: &'static str, error: rustls_pki_types::pem::Error },
    #[error("{}: no {what} in the file", path.display())]
    Empty { path: PathBuf, what: &'static str },
    #[error("{}: {error}", path.display())]
    Rejected { path: PathBuf, error: String },
    #[error("certificate and key do not fit: {0}")]
    Mismatch(rustls::Error),
    #[error("{0}")]
    Protocols(rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|error| TlsFileError::Read { path: path.into(), error })
}

fn load_pair(cert: &Path, key: &Path) -> Result<(CertifiedKey, Vec<u8>), TlsFileError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|error| TlsFileError::NotPem { path: cert.into(), what: "certificate", error })?;
    if chain.is_empty() {
        return Err(TlsFileError::Empty { path: cert.into(), what: "certificate" });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsFileError::NotPem { path: key.into(), what: "private key", error })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key_der, &provider).map_err(TlsFileError::Mismatch)?;
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
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>, TlsFileError> {
        let (certified, fingerprint) = load_pair(cert, key)?;
        Ok(Arc::new(CertStore { current: RwLock::new(Arc::new(certified)), loaded: RwLock::new(fingerprint), cert: cert.into(), key: key.into() }))
    }

    /// Re-reads the files; `Ok(true)` when a new pair is now served.
    pub fn reload(&self) -> Result<bool, TlsFileError> {
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
                    Err(e) if e.to_string() != last_error => {
                        tracing::warn!("new certificate not loaded, keeping the old one: {e}");
                        last_error = e.to_string();
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

/// The TLS settings. With `client_ca` (PEM), a client certificate is verified against it when
/// presented; whether one is required is the admission routes' decision ([`super::conn::guard`]),
/// so that the kubelet's `/healthz` probes still work.
pub fn tls_config(store: Arc<CertStore>, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(TlsFileError::Protocols)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read(path)?;
            let rejected = |error: &dyn std::fmt::Display| TlsFileError::Rejected { path: path.into(), error: error.to_string() };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|error| TlsFileError::NotPem { path: path.into(), what: "certificate", error })?;
                roots.add(cert).map_err(|e| rejected(&e))?;
            }
            if roots.is_empty() {
                return Err(TlsFileError::Empty { path: path.into(), what: "CA certificate" });
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| rejected(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
