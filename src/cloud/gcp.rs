//! Google Cloud: the metadata server (GCE, GKE Workload Identity) and IAM Credentials `signJwt`.
//! `GCE_METADATA_HOST` (Google's SDKs' name) points the metadata requests elsewhere.

use super::{Clients, CloudError, checked_json, metadata_get};
use crate::SecretString;
use serde::Deserialize;
use std::time::Duration;

pub const GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
/// gcloud's override of the IAM Credentials API endpoint.
pub const CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS";
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
pub const DEFAULT_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com";

/// Where the metadata server and IAM Credentials are.
#[derive(Debug, Clone, PartialEq)]
pub struct GcpEndpoints {
    /// `http://HOST`
    pub metadata: String,
    pub iam_credentials: String,
}

impl GcpEndpoints {
    pub fn new(metadata_host: Option<&str>, iam_credentials: Option<&str>) -> GcpEndpoints {
        let host = metadata_host.map(str::trim).filter(|h| !h.is_empty()).unwrap_or(DEFAULT_METADATA_HOST);
        let host = host.trim_start_matches("http://").trim_end_matches('/');
        let iam = iam_credentials.map(str::trim).filter(|e| !e.is_empty()).unwrap_or(DEFAULT_IAM_CREDENTIALS);
        GcpEndpoints { metadata: format!("http://{host}"), iam_credentials: iam.trim_end_matches('/').to_string() }
    }

    async fn metadata(&self, clients: &Clients, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Response, CloudError> {
        let path = format!("/computeMetadata/v1/{path}");
        metadata_get(clients, "GCP metadata server", &self.metadata, &path, query, ("Metadata-Flavor", "Google")).await
    }

    /// The default service account's identity token for `audience` (`format=full`: with the
    /// instance's claims, as Vault's gcp method wants for GCE logins).
    pub async fn identity_token(&self, clients: &Clients, audience: &str) -> Result<SecretString, CloudError> {
        let path = "instance/service-accounts/default/identity";
        let response = self.metadata(clients, path, &[("audience", audience), ("format", "full")]).await?;
        let text = response.text().await.map_err(|e| CloudError::http(format_args!("GCP metadata server: {path}"), &e))?;
        Ok(SecretString::new(text.trim()))
    }

    /// The default service account's email.
    pub async fn email(&self, clients: &Clients) -> Result<String, CloudError> {
        let path = "instance/service-accounts/default/email";
        let response = self.metadata(clients, path, &[]).await?;
        Ok(response.text().await.map_err(|e| CloudError::http(format_args!("GCP metadata server: {path}"), &e))?.trim().to_string())
    }

    /// An OAuth access token of the default service account, and how long it lasts.
    pub async fn access_token(&self, clients: &Clients) -> Result<(SecretString, Duration), CloudError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: u64,
        }
        let path = "instance/service-accounts/default/token";
        let answer: Answer = self
            .metadata(clients, path, &[])
            .await?
            .json()
            .await
            .map_err(|e| CloudError::http(format_args!("GCP metadata server: {path}: not a token answer"), &e))?;
        Ok((SecretString::new(answer.access_token), Duration::from_secs(answer.expires_in)))
    }

    /// `claims` signed by Google for service account `email` (IAM Credentials `signJwt`), with
    /// `token` (an access token that may act as it).
    pub async fn sign_jwt(
        &self,
        clients: &Clients,
        email: &str,
        token: &SecretString,
        claims: &serde_json::Value,
    ) -> Result<SecretString, CloudError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            signed_jwt: String,
        }
        let url = format!("{}/v1/projects/-/serviceAccounts/{email}:signJwt", self.iam_credentials);
        let what = format!("GCP IAM Credentials signJwt ({}, {email})", self.iam_credentials);
        let request = clients.api.post(&url).bearer_auth(token.expose()).json(&serde_json::json!({"payload": claims.to_string()}));
        let answer: Answer = checked_json(request, &what).await?;
        Ok(SecretString::new(answer.signed_jwt))
    }
}
