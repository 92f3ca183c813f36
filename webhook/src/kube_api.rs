//! Kubernetes API reads (Secrets, ConfigMaps, ServiceAccounts) through `kube`. The client is made
//! on first use, so pods that need no read are mutated even where no API server is reachable.

use crate::metrics::Metrics;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OnceCell;

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

    /// A Secret's values as text (`data` decoded, `stringData` if a client sent it); values that
    /// are not UTF-8 cannot be references and are left out.
    pub fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = secret
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|s| (k.clone(), s)))
            .collect();
        out.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    pub fn config_map_strings(cm: &ConfigMap) -> BTreeMap<String, String> {
        cm.data.clone().unwrap_or_default()
    }
}
