//! Kubernetes API reads (Secrets, ConfigMaps, ServiceAccounts) through `kube`. The client is made
//! on first use, so pods that need no read are mutated even where no API server is reachable.

use crate::metrics::Metrics;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OnceCell;
use vault_env::SecretString;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("no Kubernetes API client (in-cluster config or KUBECONFIG): {0}")]
    NoClient(String),
    #[error("reading {what}: {why}")]
    Read { what: String, why: String },
}

pub struct KubeApi {
    client: OnceCell<Client>,
    metrics: Arc<Metrics>,
}

impl KubeApi {
    pub fn new(metrics: Arc<Metrics>) -> KubeApi {
        KubeApi { client: OnceCell::new(), metrics }
    }

    async fn client(&self) -> Result<&Client, ApiError> {
        self.client.get_or_try_init(|| async { Client::try_default().await.map_err(|e| ApiError::NoClient(e.to_string())) }).await
    }

    async fn get<K>(&self, resource: &str, namespace: &str, name: &str) -> Result<Option<K>, ApiError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let client = self.client().await?.clone();
        let started = Instant::now();
        let result = Api::<K>::namespaced(client, namespace).get_opt(name).await;
        let outcome = match &result {
            Ok(Some(_)) => "ok",
            Ok(None) => "not_found",
            Err(_) => "error",
        };
        self.metrics.kube_call(resource, outcome, started.elapsed());
        result.map_err(|e| ApiError::Read { what: format!("{resource} {namespace}/{name}"), why: e.to_string() })
    }

    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        self.get("secrets", namespace, name).await
    }

    pub async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        self.get("configmaps", namespace, name).await
    }

    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<Option<ServiceAccount>, ApiError> {
        self.get("serviceaccounts", namespace, name).await
    }

    /// A token for a ServiceAccount, to log in to Vault as it: its legacy token Secret if it has
    /// one (as Bank-Vaults), else a TokenRequest (audience `https://kubernetes.default.svc`, 600 s).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<SecretString, ApiError> {
        let what = format!("serviceaccount {namespace}/{name}");
        let sa = self.service_account(namespace, name).await?.ok_or_else(|| ApiError::Read { what: what.clone(), why: "not found".into() })?;
        let legacy = sa.secrets.iter().flatten().filter_map(|r| r.name.as_deref()).next();
        if let Some(secret_name) = legacy
            && let Some(secret) = self.secret(namespace, secret_name).await?
            && let Some(token) = secret.data.as_ref().and_then(|d| d.get("token"))
            && let Ok(text) = std::str::from_utf8(&token.0)
        {
            return Ok(SecretString::new(text.trim()));
        }
        let client = self.client().await?.clone();
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec!["https://kubernetes.default.svc".into()],
                expiration_seconds: Some(600),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        let started = Instant::now();
        let result = Api::<ServiceAccount>::namespaced(client, namespace).create_token_request(name, &PostParams::default(), &request).await;
        self.metrics.kube_call("serviceaccounts/token", if result.is_ok() { "ok" } else { "error" }, started.elapsed());
        let answer = result.map_err(|e| ApiError::Read { what: format!("a token for {what}"), why: e.to_string() })?;
        match answer.status {
            Some(status) if !status.token.is_empty() => Ok(SecretString::new(status.token)),
            _ => Err(ApiError::Read { what: format!("a token for {what}"), why: "the answer holds no token".into() }),
        }
    }

    /// A Secret's values as text (`data` decoded, `stringData` if a client sent it); values that
    /// are not UTF-8 cannot be references and are left out.
    pub fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> =
            secret.data.iter().flatten().filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|s| (k.clone(), s))).collect();
        out.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    pub fn config_map_strings(cm: &ConfigMap) -> BTreeMap<String, String> {
        cm.data.clone().unwrap_or_default()
    }
}
