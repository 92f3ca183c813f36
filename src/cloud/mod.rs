//! The clouds' identity services, without their SDKs: AWS ([`aws`]: credential chain, SigV4,
//! instance identity), GCP ([`gcp`]: the metadata server, IAM Credentials `signJwt`) and Azure
//! ([`azure`]: IMDS managed identity and instance metadata). vault-env logs in with them; the
//! webhook reads registry credentials with them. Errors name the service and step, never a
//! credential or token.

pub mod aws;
pub mod azure;
pub mod gcp;

use std::sync::Arc;
use std::time::Duration;

/// Why a cloud identity could not be had: the service did not answer (exit 69: try again
/// later), or it answered and refused (exit 77: the credential or its permissions are wrong),
/// or its answer was unusable. Never carries a credential or token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloudError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
}

impl CloudError {
    /// From a failed request or answer: no answer, a 4xx (refused), a 5xx (the service is
    /// unavailable), or an answer that does not decode.
    pub fn http(context: impl std::fmt::Display, e: &reqwest::Error) -> CloudError {
        let text = format!("{context}: {e}");
        match e.status() {
            Some(s) if s.is_client_error() => CloudError::Refused(text),
            Some(_) => CloudError::Unreachable(text),
            None if e.is_decode() || e.is_body() => CloudError::Invalid(text),
            None => CloudError::Unreachable(text),
        }
    }

    /// From an answer that was not a success: its `failure` text, classified by status.
    pub fn status(status: reqwest::StatusCode, text: String) -> CloudError {
        if status.is_client_error() { CloudError::Refused(text) } else { CloudError::Unreachable(text) }
    }

    pub fn is_refused(&self) -> bool {
        matches!(self, CloudError::Refused(_))
    }

    /// The same kind of error, its text prefixed with `context` (which step of which service).
    pub fn context(self, context: impl std::fmt::Display) -> CloudError {
        match self {
            CloudError::Unreachable(t) => CloudError::Unreachable(format!("{context}: {t}")),
            CloudError::Refused(t) => CloudError::Refused(format!("{context}: {t}")),
            CloudError::Invalid(t) => CloudError::Invalid(format!("{context}: {t}")),
        }
    }
}

impl From<CloudError> for String {
    fn from(e: CloudError) -> String {
        e.to_string()
    }
}

/// HTTP clients for the clouds: `metadata` for the link-local metadata services (never through
/// a proxy), `api` for the clouds' public APIs (proxies from the environment apply).
#[derive(Clone)]
pub struct Clients {
    pub metadata: reqwest::Client,
    pub api: reqwest::Client,
}

impl Clients {
    /// `metadata_timeout` bounds each metadata request (a missing metadata server fails within
    /// it), `api_timeout` each API request.
    pub fn new(metadata_timeout: Duration, api_timeout: Duration) -> Result<Clients, CloudError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CloudError::Invalid(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let metadata = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .no_proxy()
            .connect_timeout(metadata_timeout.min(Duration::from_secs(1)).max(Duration::from_millis(200)))
            .timeout(metadata_timeout)
            .build()
            .map_err(|e| CloudError::Invalid(format!("cannot set up the metadata client: {e}")))?;
        let api = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(api_timeout)
            .timeout(api_timeout * 2)
            .build()
            .map_err(|e| CloudError::Invalid(format!("cannot set up the cloud API client: {e}")))?;
        Ok(Clients { metadata, api })
    }
}

/// A metadata service's 2xx answer to `GET {base}{path}?{query}` with its `header`; errors name
/// `service`, `base` and `path`.
pub async fn metadata_get(
    clients: &Clients,
    service: &str,
    base: &str,
    path: &str,
    query: &[(&str, &str)],
    header: (&str, &str),
) -> Result<reqwest::Response, CloudError> {
    let request = clients.metadata.get(format!("{base}{path}")).query(query).header(header.0, header.1);
    checked(request, &format!("{service} ({base}): {path}")).await
}

/// The 2xx answer to `request`. Errors start with `step`: no answer (unreachable), a 4xx
/// (refused: the identity or its permissions), a 5xx (unavailable), with the cloud's reason.
pub async fn checked(request: reqwest::RequestBuilder, step: &str) -> Result<reqwest::Response, CloudError> {
    let response = request.send().await.map_err(|e| CloudError::http(step, &e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(CloudError::status(status, format!("{step}: {}", failure(response).await)));
    }
    Ok(response)
}

/// [`checked`], and its JSON body decoded (an answer that does not decode is unusable).
pub async fn checked_json<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder, step: &str) -> Result<T, CloudError> {
    checked(request, step).await?.json().await.map_err(|e| CloudError::http(step, &e))
}

/// The body of a 2xx answer to `request`; any other answer is an error.
pub async fn ok_text(request: reqwest::RequestBuilder) -> Result<String, reqwest::Error> {
    request.send().await?.error_for_status()?.text().await
}

pub async fn ok_json<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, reqwest::Error> {
    request.send().await?.error_for_status()?.json().await
}

/// `{status} {reason}` of a failed answer, with the reason taken from the cloud's JSON error
/// (`error.message`, `error_description`, `errors[0].message`, `message`) and cut short; no body is echoed otherwise.
pub async fn failure(response: reqwest::Response) -> String {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let reason = [&body["error"]["message"], &body["error_description"], &body["errors"][0]["message"], &body["message"], &body["error"]]
        .into_iter()
        .find_map(|v| v.as_str())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    format!("{status} {reason}").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step's context is added to the text; the kind (and so vault-env's exit code, and what the
    /// webhook's callers can tell apart) stays.
    #[test]
    fn context_keeps_the_kind() {
        let refused = CloudError::Refused("403 Forbidden".into()).context("ECR");
        assert_eq!(refused, CloudError::Refused("ECR: 403 Forbidden".into()));
        assert!(refused.is_refused());
        assert_eq!(CloudError::Unreachable("timed out".into()).context("GCP"), CloudError::Unreachable("GCP: timed out".into()));
        assert_eq!(CloudError::Invalid("no token".into()).context("ACR").to_string(), "ACR: no token");
    }
}
