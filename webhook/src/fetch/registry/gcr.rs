//! Google Container Registry and Artifact Registry (`*gcr.io`, `*.pkg.dev`) with the webhook's own
//! Google identity, when the pod brings no pull secret for them: what go-containerregistry's
//! `google.Keychain` does for Bank-Vaults. An access token (scope `cloud-platform`) from
//! Application Default Credentials, in their order: a service-account key file
//! (`GOOGLE_APPLICATION_CREDENTIALS`, an RS256 JWT assertion signed with `ring` and exchanged at
//! its `token_uri`), else the metadata server (GCE, GKE Workload Identity: the Google service
//! account bound to the webhook's ServiceAccount). Used as basic auth `_token:<access token>`.

use super::cloud::{LazyClients, TokenCache, host_of};
use super::pull_secrets::DockerAuth;
use crate::metrics::Metrics;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vault_env::SecretString;
use vault_env::cloud::CloudError;
use vault_env::cloud::gcp::GcpEndpoints;

pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A GCR or Artifact Registry host.
pub fn is_gcp_registry(registry: &str) -> bool {
    let host = host_of(registry);
    host == "gcr.io" || host.ends_with(".gcr.io") || host.ends_with(".pkg.dev")
}

#[derive(Debug, Clone, PartialEq)]
pub struct GcpSettings {
    pub endpoints: GcpEndpoints,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service-account key file.
    pub key_file: Option<PathBuf>,
}

pub struct Gcr {
    settings: GcpSettings,
    clients: LazyClients,
    tokens: TokenCache,
    metrics: Arc<Metrics>,
}

/// A service-account key file's fields that matter here.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    token_uri: String,
}

impl Gcr {
    pub fn new(settings: GcpSettings, timeout: Duration, metrics: Arc<Metrics>) -> Gcr {
        Gcr { settings, clients: LazyClients::new(timeout), tokens: TokenCache::default(), metrics }
    }

    /// Basic-auth credentials for `registry`, or `None` when it is not GCR/Artifact Registry.
    /// One token serves every such registry.
    pub async fn pull_credentials(&self, registry: &str) -> Option<Result<DockerAuth, CloudError>> {
        if !is_gcp_registry(registry) {
            return None;
        }
        let got = self.tokens.get("gcp", async || {
            let fetched = self.access_token().await;
            self.metrics.gcp_token(registry, if fetched.is_ok() { "ok" } else { "error" });
            fetched.map(|(token, expires)| (DockerAuth { registry: "gcp".into(), username: "_token".into(), password: token }, expires))
        });
        Some(got.await.map(|auth| DockerAuth { registry: registry.to_string(), ..auth }))
    }

    async fn access_token(&self) -> Result<(SecretString, SystemTime), CloudError> {
        let clients = self.clients.get().map_err(|e| e.context("GCP"))?;
        let (token, lasts) = match &self.settings.key_file {
            Some(file) => self.key_file_token(clients, file).await?,
            None => self.settings.endpoints.access_token(clients).await?,
        };
        tracing::debug!("GCP: access token obtained for the registry");
        Ok((token, SystemTime::now() + lasts.max(Duration::from_secs(60))))
    }

    /// A service-account key: a JWT assertion signed with its key, exchanged at its `token_uri`.
    async fn key_file_token(&self, clients: &vault_env::cloud::Clients, file: &PathBuf) -> Result<(SecretString, Duration), CloudError> {
        let what = format!("{GOOGLE_APPLICATION_CREDENTIALS} ({})", file.display());
        let bad_file = |problem: String| CloudError::Invalid(format!("{what}: {problem}"));
        let text = std::fs::read_to_string(file).map_err(|e| bad_file(e.to_string()))?;
        let key: KeyFile = serde_json::from_str(&text).map_err(|e| bad_file(format!("not a credentials file: {e}")))?;
        if key.kind != "service_account" {
            return Err(bad_file(format!("credentials of type {:?} are not supported (service_account keys are)", key.kind)));
        }
        let token_uri = if key.token_uri.is_empty() { "https://oauth2.googleapis.com/token".to_string() } else { key.token_uri.clone() };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = serde_json::json!({"iss": key.client_email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + 3600});
        let assertion = sign_rs256(&key.private_key, &claims).map_err(|e| e.context(&what))?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: u64,
        }
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
        let step = format!("GCP token ({token_uri}, {})", key.client_email);
        let answer: Answer = vault_env::cloud::checked_json(clients.api.post(&token_uri).form(&form), &step).await?;
        Ok((SecretString::new(answer.access_token), Duration::from_secs(answer.expires_in)))
    }
}

/// An RS256 JWT of `claims`, signed with a PKCS#8 PEM key.
fn sign_rs256(pem: &str, claims: &serde_json::Value) -> Result<String, CloudError> {
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(der.trim()).map_err(|_| CloudError::Invalid("private_key is not PEM".to_string()))?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| CloudError::Invalid(format!("private_key is not an RSA PKCS#8 key: {e}")))?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), input.as_bytes(), &mut signature)
        .map_err(|_| CloudError::Invalid("signing failed".to_string()))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcp_hosts() {
        for host in ["gcr.io", "eu.gcr.io", "europe-docker.pkg.dev", "us-central1-docker.pkg.dev:443"] {
            assert!(is_gcp_registry(host), "{host}");
        }
        for host in ["gcr.io.evil.com", "docker.io", "pkg.dev.example.com", "notgcr.io"] {
            assert!(!is_gcp_registry(host), "{host}");
        }
    }

    #[test]
    fn bad_keys_are_errors_not_panics() {
        let claims = serde_json::json!({});
        assert_eq!(sign_rs256("not a key", &claims).unwrap_err().to_string(), "private_key is not PEM");
        let not_rsa = sign_rs256("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", &claims).unwrap_err();
        assert!(matches!(&not_rsa, CloudError::Invalid(t) if t.contains("not an RSA PKCS#8 key")), "{not_rsa:?}");
    }
}
