//! Azure Container Registry (`*.azurecr.io`, `.cn`, `.de`, `.us`) with the webhook's own Azure
//! identity, when the pod brings no pull secret for it: what the ACR credential helper does for
//! Bank-Vaults. An Entra ID (AAD) token for `https://management.azure.com/.default`, in the Azure
//! SDKs' order: a client secret (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`),
//! workload identity (`AZURE_FEDERATED_TOKEN_FILE` with the client and tenant ids, as AKS sets
//! them), else the managed identity through IMDS. It is exchanged at the registry's
//! `/oauth2/exchange` for a refresh token, used as basic auth with Azure's documented user
//! `00000000-0000-0000-0000-000000000000`; the registry's bearer flow does the rest.

use super::cloud::{LazyClients, TokenCache, host_of};
use super::pull_secrets::DockerAuth;
use crate::metrics::Metrics;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use vault_env::SecretString;
use vault_env::cloud::azure::Imds;
use vault_env::cloud::{Clients, CloudError, checked_json};

pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const SCOPE: &str = "https://management.azure.com/.default";
/// ACR's refresh tokens last three hours; kept for one.
const REFRESH_TOKEN_KEPT: Duration = Duration::from_secs(3600);
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";

/// An ACR host.
pub fn is_acr(registry: &str) -> bool {
    let host = host_of(registry);
    [".azurecr.io", ".azurecr.cn", ".azurecr.de", ".azurecr.us"].iter().any(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
}

/// Where the webhook's Entra ID token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AadSource {
    ClientSecret { tenant: String, client_id: String, secret: SecretString },
    WorkloadIdentity { tenant: String, client_id: String, token_file: PathBuf },
    ManagedIdentity(Imds),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AcrSettings {
    pub source: AadSource,
    /// `AZURE_AUTHORITY_HOST`.
    pub authority: String,
}

pub struct Acr {
    settings: AcrSettings,
    clients: LazyClients,
    tokens: TokenCache,
    /// One Entra ID token for every ACR registry (the webhook's identity is one): with its tenant
    /// and when it was obtained.
    aad: tokio::sync::Mutex<Option<(SecretString, Option<String>, Instant)>>,
    metrics: Arc<Metrics>,
}

/// How long an Entra ID token is reused (they last an hour or more).
const AAD_TOKEN_KEPT: Duration = Duration::from_secs(30 * 60);

impl Acr {
    pub fn new(settings: AcrSettings, timeout: Duration, metrics: Arc<Metrics>) -> Acr {
        Acr { settings, clients: LazyClients::new(timeout), tokens: TokenCache::default(), aad: Default::default(), metrics }
    }

    /// Basic-auth credentials for `registry`, or `None` when it is not an ACR registry.
    pub async fn pull_credentials(&self, registry: &str) -> Option<Result<DockerAuth, CloudError>> {
        if !is_acr(registry) {
            return None;
        }
        let got = self.tokens.get(registry, async || {
            let fetched = self.refresh_token(registry).await;
            self.metrics.acr_token(registry, if fetched.is_ok() { "ok" } else { "error" });
            let auth = |token| DockerAuth { registry: registry.to_string(), username: ACR_USER.into(), password: token };
            fetched.map(|token| (auth(token), SystemTime::now() + REFRESH_TOKEN_KEPT))
        });
        Some(got.await)
    }

    async fn refresh_token(&self, registry: &str) -> Result<SecretString, CloudError> {
        let clients = self.clients.get().map_err(|e| e.context("ACR"))?;
        let (aad, tenant) = self.shared_aad_token(clients).await?;
        #[derive(Deserialize)]
        struct Answer {
            refresh_token: String,
        }
        let url = format!("https://{registry}/oauth2/exchange");
        let mut form = vec![("grant_type", "access_token"), ("service", registry), ("access_token", aad.expose())];
        if let Some(tenant) = &tenant {
            form.push(("tenant", tenant));
        }
        let step = format!("ACR token exchange ({url})");
        let answer: Answer = checked_json(clients.api.post(&url).form(&form), &step).await?;
        tracing::debug!(registry, "ACR: refresh token obtained");
        Ok(SecretString::new(answer.refresh_token))
    }

    /// The Entra ID token, shared by every ACR registry and kept for [`AAD_TOKEN_KEPT`].
    async fn shared_aad_token(&self, clients: &Clients) -> Result<(SecretString, Option<String>), CloudError> {
        let mut kept = self.aad.lock().await;
        if let Some((token, tenant, at)) = kept.as_ref()
            && at.elapsed() < AAD_TOKEN_KEPT
        {
            return Ok((token.clone(), tenant.clone()));
        }
        let (token, tenant) = self.aad_token(clients).await?;
        *kept = Some((token.clone(), tenant.clone(), Instant::now()));
        Ok((token, tenant))
    }

    /// An Entra ID access token for Azure Resource Manager, and the tenant when known.
    async fn aad_token(&self, clients: &Clients) -> Result<(SecretString, Option<String>), CloudError> {
        let (tenant, client_id, credential) = match &self.settings.source {
            AadSource::ManagedIdentity(imds) => return Ok((imds.token(clients, "https://management.azure.com/").await?, None)),
            AadSource::ClientSecret { tenant, client_id, secret } => (tenant, client_id, vec![("client_secret", secret.expose().to_string())]),
            AadSource::WorkloadIdentity { tenant, client_id, token_file } => {
                let assertion = std::fs::read_to_string(token_file)
                    .map_err(|e| CloudError::Invalid(format!("{AZURE_FEDERATED_TOKEN_FILE} ({}): {e}", token_file.display())))?;
                let kind = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string();
                (tenant, client_id, vec![("client_assertion_type", kind), ("client_assertion", assertion.trim().to_string())])
            }
        };
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
        }
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.settings.authority.trim_end_matches('/'));
        let mut form: Vec<(&str, String)> =
            vec![("grant_type", "client_credentials".into()), ("client_id", client_id.clone()), ("scope", SCOPE.into())];
        form.extend(credential.iter().map(|(k, v)| (*k, v.clone())));
        let step = format!("Entra ID token ({url}, client {client_id})");
        let answer: Answer = checked_json(clients.api.post(&url).form(&form), &step).await?;
        Ok((SecretString::new(answer.access_token), Some(tenant.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_hosts() {
        for host in ["myregistry.azurecr.io", "r.azurecr.cn", "r.azurecr.us:443"] {
            assert!(is_acr(host), "{host}");
        }
        for host in ["azurecr.io", ".azurecr.io", "r.azurecr.io.evil.com", "mcr.microsoft.com"] {
            assert!(!is_acr(host), "{host}");
        }
    }
}
