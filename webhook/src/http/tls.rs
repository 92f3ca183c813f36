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

/// The TLS settings. With `client_ca` (PEM), a client certificate is verified against it when
/// presented; whether one is required is the admission routes' decision ([`super::conn::guard`]),
/// so that the kubelet's `/healthz` probes still work.
pub fn tls_config(store: Arc<CertStore>, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no CA certificate in the file", path.display()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
