//! The rustls configuration of the Vault client, from `VAULT_CACERT`/`VAULT_CAPATH`/
//! `VAULT_CACERT_BYTES` (which replace the system roots, as in Vault's Go client),
//! `VAULT_CLIENT_CERT`/`KEY`, `VAULT_SKIP_VERIFY` and `VAULT_TLS_SERVER_NAME`.

use crate::config::{self, TlsSettings};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A TLS setting that can't be used: the variable, and why.
#[derive(Debug)]
pub struct SetupError {
    pub var: &'static str,
    pub message: String,
}

fn setup(var: &'static str, message: impl fmt::Display) -> SetupError {
    SetupError { var, message: message.to_string() }
}

pub fn tls_config(s: &TlsSettings, https: bool) -> Result<rustls::ClientConfig, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(config::VAULT_ADDR, e))?;
    let verifier: Arc<dyn ServerCertVerifier> = if s.skip_verify {
        Arc::new(AnyCertificate { accept: true, algorithms: provider.signature_verification_algorithms })
    } else if !https && !s.ca.is_set() {
        // Plain HTTP: no roots loaded, so a TLS connection (say, a redirect to https) fails closed.
        Arc::new(AnyCertificate { accept: false, algorithms: provider.signature_verification_algorithms })
    } else {
        let verifier = ca_verifier(s, https, &provider)?;
        if s.ca_reload && (s.ca.file.is_some() || s.ca.dir.is_some()) {
            Arc::new(Reloading { settings: s.clone(), https, provider: provider.clone(), current: RwLock::new((ca_files(&s.ca), verifier)) })
        } else {
            verifier
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    match &s.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let certs = read_certs(cert, config::VAULT_CLIENT_CERT)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| setup(config::VAULT_CLIENT_KEY, format!("{}: {e}", key.display())))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| setup(config::VAULT_CLIENT_CERT, e))
        }
    }
}

/// The verifier for the configured CAs (or the system's) and `VAULT_TLS_SERVER_NAME`.
fn ca_verifier(s: &TlsSettings, https: bool, provider: &Arc<rustls::crypto::CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>, SetupError> {
    let roots = Arc::new(root_store(&s.ca, https)?);
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build().map_err(|e| setup(config::VAULT_CACERT, e))?;
    Ok(match &s.server_name {
        None => inner,
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|e| setup(config::VAULT_TLS_SERVER_NAME, e))?;
            Arc::new(FixedName { inner, name })
        }
    })
}

/// The bytes of the `VAULT_CACERT` file and the `VAULT_CAPATH` directory's files: what a reload
/// compares (a few KiB, read at each new connection, not at each request).
fn ca_files(ca: &config::CaSource) -> Vec<u8> {
    let mut out = ca.file.as_ref().and_then(|f| std::fs::read(f).ok()).unwrap_or_default();
    if let Some(dir) = &ca.dir {
        let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        entries.sort_unstable();
        for path in entries {
            out.extend(path.display().to_string().bytes());
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

/// `VAULT_CACERT_RELOAD` (on by default, as in Vault's SDK): at each new connection the CA files
/// are compared with those last loaded, and a change is loaded, so a daemon-mode vault-env that
/// runs for weeks follows a rotated Vault CA. A change that does not load keeps the old CAs, with
/// a warning.
struct Reloading {
    settings: TlsSettings,
    https: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<(Vec<u8>, Arc<dyn ServerCertVerifier>)>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading").field("ca", &self.settings.ca).finish()
    }
}

impl Reloading {
    /// The verifier loaded last, without looking at the files (the signature checks of one
    /// handshake, after `verify_server_cert` has looked).
    fn loaded(&self) -> Arc<dyn ServerCertVerifier> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    fn verifier(&self) -> Arc<dyn ServerCertVerifier> {
        let files = ca_files(&self.settings.ca);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == files {
            return self.loaded();
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        match ca_verifier(&self.settings, self.https, &self.provider) {
            Ok(verifier) => {
                tracing::info!("the CA certificates changed: loaded again");
                *current = (files, verifier);
            }
            Err(e) => {
                tracing::warn!("the CA certificates changed but do not load ({}: {}); keeping the old ones", e.var, e.message);
                current.0 = files;
            }
        }
        current.1.clone()
    }
}

impl ServerCertVerifier for Reloading {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier().verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.loaded().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.loaded().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.loaded().supported_verify_schemes()
    }
}

fn read_certs(path: &Path, var: &'static str) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| setup(var, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(setup(var, format!("{}: no PEM certificate in the file", path.display())));
    }
    Ok(certs)
}

/// The custom CAs when any is configured (they replace the system roots, as in Vault's Go client),
/// else the system's roots.
fn root_store(ca: &config::CaSource, https: bool) -> Result<rustls::RootCertStore, SetupError> {
    let mut store = rustls::RootCertStore::empty();
    let mut certs = Vec::new();
    if let Some(file) = &ca.file {
        certs.extend(read_certs(file, config::VAULT_CACERT)?);
    }
    if let Some(dir) = &ca.dir {
        let entries = std::fs::read_dir(dir).map_err(|e| setup(config::VAULT_CAPATH, format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            if let Ok(iter) = CertificateDer::pem_file_iter(entry.path()) {
                certs.extend(iter.flatten());
            }
        }
    }
    if let Some(pem) = &ca.pem {
        let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
        certs.extend(parsed.map_err(|e| setup(config::VAULT_CACERT_BYTES, e))?);
    }
    let custom = ca.is_set();
    if !custom && https {
        let native = rustls_native_certs::load_native_certs();
        certs.extend(native.certs);
    }
    let (_, ignored) = store.add_parsable_certificates(certs);
    if ignored > 0 {
        tracing::warn!("ignored {ignored} CA certificate(s) that could not be parsed");
    }
    if custom && store.is_empty() {
        return Err(setup(config::VAULT_CACERT, "no usable CA certificate found"));
    }
    Ok(store)
}

/// `VAULT_TLS_SERVER_NAME`: verify the certificate against this name instead of the URL's host.
#[derive(Debug)]
struct FixedName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `accept: true` is `VAULT_SKIP_VERIFY=true`: any certificate (handshake signatures are still
/// checked). `accept: false` refuses every certificate: TLS where none was configured.
#[derive(Debug)]
struct AnyCertificate {
    accept: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.accept {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("VAULT_ADDR is http:// but the server asked for TLS; use an https:// address".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
