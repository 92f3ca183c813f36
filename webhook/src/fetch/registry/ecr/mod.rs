//! Amazon ECR pull credentials from the node's instance role, for images on a private ECR
//! registry (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`) when the pod brings no pull secret for it:
//! what go-containerregistry's `k8schain` does for Bank-Vaults with the ECR credential helper.
//!
//! AWS credentials, in the AWS SDKs' order ([`CredentialSource`]): static keys, IRSA (web identity), EKS Pod
//! Identity (container credentials), the instance role (IMDSv2) → a SigV4-signed
//! `ecr:GetAuthorizationToken` → `AWS:<password>`, used as basic auth. Credentials and tokens are
//! kept until shortly before they expire. No AWS SDK: SigV4 is signed with `ring`, the project's
//! one crypto provider, and checked against AWS's published test vector and, in the black-box
//! tests, against botocore.
//!
//! Settings (the AWS SDKs' names): `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`;
//! `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+ `AWS_ROLE_SESSION_NAME`, `AWS_REGION`);
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` or `_RELATIVE_URI` (+ `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`);
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` (default `http://169.254.169.254`),
//! `AWS_EC2_METADATA_DISABLED=true`; endpoints `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_STS`,
//! `AWS_ENDPOINT_URL`.

pub use vault_env::cloud::aws::{AwsCredentials, CredentialSource, credentials};

use super::cloud::{LazyClients, MARGIN, TokenCache, host_of};
use super::pull_secrets::DockerAuth;
use crate::metrics::Metrics;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vault_env::cloud::CloudError;
use vault_env::cloud::aws::sigv4::signed_post_headers;
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// ECR Public's registry; its tokens come from us-east-1 only.
pub const ECR_PUBLIC: &str = "public.ecr.aws";

/// The region of a private ECR registry host (`ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]`,
/// with or without a port), and whether it is in the China partition.
pub fn ecr_region(registry: &str) -> Option<(&str, bool)> {
    let parts: Vec<&str> = host_of(registry).split('.').collect();
    let (head, cn) = match parts.as_slice() {
        [head @ .., "amazonaws", "com"] => (head, false),
        [head @ .., "amazonaws", "com", "cn"] => (head, true),
        _ => return None,
    };
    match head {
        [account, "dkr", "ecr" | "ecr-fips", region] if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !region.is_empty() => {
            Some((region, cn))
        }
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct EcrSettings {
    pub source: CredentialSource,
    /// The ECR API endpoint, instead of `https://api.ecr.REGION.amazonaws.com`.
    pub api_endpoint: Option<String>,
    /// The ECR Public API endpoint, instead of `https://api.ecr-public.us-east-1.amazonaws.com`.
    pub public_endpoint: Option<String>,
}

/// Which API hands out a registry's tokens.
#[derive(Clone, Copy)]
enum Api<'a> {
    Private { region: &'a str, cn: bool },
    Public,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    expires_at: Option<f64>,
}

#[derive(Deserialize, Default)]
struct AwsError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(default, alias = "Message")]
    message: String,
}

pub struct Ecr {
    settings: EcrSettings,
    /// Made on first use: most clusters never see an ECR image.
    clients: LazyClients,
    credentials: Mutex<Option<AwsCredentials>>,
    /// Tokens by registry; one credentials-and-token fetch at a time per registry (AWS throttles
    /// GetAuthorizationToken).
    tokens: TokenCache,
    metrics: Arc<Metrics>,
}

fn fresh(expires: Option<SystemTime>) -> bool {
    expires.is_none_or(|e| e > SystemTime::now() + MARGIN)
}

impl Ecr {
    pub fn new(settings: EcrSettings, timeout: Duration, metrics: Arc<Metrics>) -> Arc<Ecr> {
        Arc::new(Ecr { settings, clients: LazyClients::new(timeout), credentials: Mutex::new(None), tokens: TokenCache::default(), metrics })
    }

    fn clients(&self) -> Result<&vault_env::cloud::Clients, CloudError> {
        self.clients.get().map_err(|e| e.context("ECR"))
    }

    /// Basic-auth credentials for `registry` (normalized host), or `None` when it is neither a
    /// private ECR registry nor ECR Public (whose anonymous pulls are rate-limited harder).
    /// Errors say which step failed; they carry no secret.
    pub async fn pull_credentials(&self, registry: &str) -> Option<Result<DockerAuth, CloudError>> {
        let api = match ecr_region(registry) {
            Some((region, cn)) => Api::Private { region, cn },
            None if registry == ECR_PUBLIC => Api::Public,
            None => return None,
        };
        let got = self.tokens.get(registry, async || {
            let fetched = self.fetch_token(registry, api).await;
            self.metrics.ecr_token(registry, if fetched.is_ok() { "ok" } else { "error" });
            fetched
        });
        Some(got.await)
    }

    async fn fetch_token(&self, registry: &str, api: Api<'_>) -> Result<(DockerAuth, SystemTime), CloudError> {
        let credentials = self.aws_credentials().await?;
        self.authorization_token(registry, api, &credentials).await
    }

    async fn aws_credentials(&self) -> Result<AwsCredentials, CloudError> {
        if let Some(c) = self.credentials.lock().ok().and_then(|r| r.clone())
            && fresh(c.expires)
        {
            return Ok(c);
        }
        let clients = self.clients()?;
        let credentials = self.settings.source.fetch(&clients.metadata, &clients.api).await?;
        if let Ok(mut c) = self.credentials.lock() {
            *c = Some(credentials.clone());
        }
        Ok(credentials)
    }

    async fn authorization_token(&self, registry: &str, api: Api<'_>, credentials: &AwsCredentials) -> Result<(DockerAuth, SystemTime), CloudError> {
        let (endpoint, region, service, target) = match api {
            Api::Private { region, cn } => {
                let default = || format!("https://api.ecr.{region}.amazonaws.com{}/", if cn { ".cn" } else { "" });
                (self.settings.api_endpoint.clone().unwrap_or_else(default), region, "ecr", TARGET)
            }
            Api::Public => {
                let default = || "https://api.ecr-public.us-east-1.amazonaws.com/".to_string();
                (self.settings.public_endpoint.clone().unwrap_or_else(default), "us-east-1", "ecr-public", PUBLIC_TARGET)
            }
        };
        let url = url::Url::parse(&endpoint).map_err(|e| CloudError::Invalid(format!("ECR endpoint {endpoint}: {e}")))?;
        let body = b"{}";
        let headers = signed_post_headers(&url, &[("content-type", CONTENT_TYPE), ("x-amz-target", target)], body, region, service, credentials)
            .map_err(|e| CloudError::Invalid(format!("ECR endpoint {e}")))?;
        let mut post = self.clients()?.api.post(url.clone()).body(&body[..]);
        for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
            post = post.header(name, value);
        }
        let step = format!("ECR GetAuthorizationToken ({endpoint})");
        let failed = |e: reqwest::Error| CloudError::http(&step, &e);
        let response = post.send().await.map_err(failed)?;
        let status = response.status();
        let text = response.text().await.map_err(failed)?;
        if !status.is_success() {
            let error: AwsError = serde_json::from_str(&text).unwrap_or_default();
            return Err(CloudError::status(status, format!("{step}: {status}: {} {}", error.kind, error.message).trim_end().to_string()));
        }
        let unusable = |what: &dyn std::fmt::Display| CloudError::Invalid(format!("{step}: {what}"));
        let answer: serde_json::Value = serde_json::from_str(&text).map_err(|e| unusable(&format!("unexpected answer: {e}")))?;
        // A list for ECR, one object for ECR Public.
        let data = match &answer["authorizationData"] {
            serde_json::Value::Array(list) => list.first().cloned(),
            object => Some(object.clone()),
        };
        let data: AuthorizationData = data.and_then(|d| serde_json::from_value(d).ok()).ok_or_else(|| unusable(&"no token in the answer"))?;
        let decoded = STANDARD.decode(data.authorization_token.trim()).ok().and_then(|d| String::from_utf8(d).ok());
        let (username, password) = decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .ok_or_else(|| unusable(&"the token is not base64 of user:password"))?;
        // ECR tokens last 12 hours.
        let expires = expiry(data.expires_at);
        tracing::debug!(registry, "ECR: authorization token obtained");
        Ok((DockerAuth { registry: registry.to_string(), username, password: password.into() }, expires))
    }
}

/// When an ECR token expires: its `expiresAt` (seconds since the epoch), else in 12 hours. Any
/// number may come back; none panics (`1e300` used to kill the webhook).
fn expiry(expires_at: Option<f64>) -> SystemTime {
    expires_at
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok().and_then(|d| UNIX_EPOCH.checked_add(d)))
        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(12 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_expiry_from_ecr_is_a_time() {
        assert_eq!(expiry(Some(1.7e9)), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        for odd in [Some(1e300), Some(f64::INFINITY), Some(f64::NAN), Some(-5.0), Some(1.8e19), None] {
            assert!(expiry(odd) > SystemTime::now(), "{odd:?}");
        }
    }

    #[test]
    fn ecr_hosts() {
        assert_eq!(ecr_region("123456789012.dkr.ecr.us-east-1.amazonaws.com"), Some(("us-east-1", false)));
        assert_eq!(ecr_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com:443"), Some(("us-gov-west-1", false)));
        assert_eq!(ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"), Some(("cn-north-1", true)));
        for other in [
            "public.ecr.aws",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
            "docker.io",
            "123456789012.dkr.ecr..amazonaws.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ] {
            assert_eq!(ecr_region(other), None, "{other}");
        }
    }
}
