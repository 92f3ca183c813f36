//! Azure: the instance metadata service (IMDS): a managed identity's token and the instance's
//! placement. `AZURE_POD_IDENTITY_AUTHORITY_HOST` (the Azure SDKs' name) points IMDS elsewhere.

use super::{Clients, CloudError, metadata_get};
use crate::SecretString;
use serde::Deserialize;

pub const AZURE_POD_IDENTITY_AUTHORITY_HOST: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
/// A user-assigned identity (else the system-assigned one).
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// The resource Vault's azure method expects tokens for.
pub const MANAGEMENT: &str = "https://management.azure.com/";

/// The instance's placement, as Vault's azure login wants it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compute {
    pub subscription_id: String,
    pub resource_group_name: String,
    pub name: String,
    #[serde(default)]
    pub vm_scale_set_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Imds {
    pub base: String,
    pub client_id: Option<String>,
}

impl Imds {
    pub fn new(base: Option<&str>, client_id: Option<&str>) -> Imds {
        let base = base.map(str::trim).filter(|b| !b.is_empty()).unwrap_or(DEFAULT_IMDS).trim_end_matches('/').to_string();
        Imds { base, client_id: client_id.map(str::trim).filter(|c| !c.is_empty()).map(String::from) }
    }

    async fn get(&self, clients: &Clients, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Response, CloudError> {
        metadata_get(clients, "Azure instance metadata", &self.base, path, query, ("Metadata", "true")).await
    }

    /// The managed identity's access token for `resource`.
    pub async fn token(&self, clients: &Clients, resource: &str) -> Result<SecretString, CloudError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
        }
        let path = "/metadata/identity/oauth2/token";
        let mut query = vec![("api-version", "2018-02-01"), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let answer: Answer = self
            .get(clients, path, &query)
            .await?
            .json()
            .await
            .map_err(|e| CloudError::http(format_args!("Azure instance metadata: {path}: not a token answer"), &e))?;
        Ok(SecretString::new(answer.access_token))
    }

    /// Where the instance runs.
    pub async fn compute(&self, clients: &Clients) -> Result<Compute, CloudError> {
        #[derive(Deserialize)]
        struct Answer {
            compute: Compute,
        }
        let path = "/metadata/instance";
        let answer: Answer = self
            .get(clients, path, &[("api-version", "2017-08-01"), ("format", "json")])
            .await?
            .json()
            .await
            .map_err(|e| CloudError::http(format_args!("Azure instance metadata: {path}: not an instance answer"), &e))?;
        Ok(answer.compute)
    }
}
