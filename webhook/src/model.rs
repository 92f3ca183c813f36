//! The parts of a Pod the webhook reads, and nothing else. Reviews arrive as JSON; reading them
//! into `k8s_openapi`'s `Pod` built every field of every container (a `Container` is about 1.6 kB
//! of struct before its strings) only to look at a dozen: that was the larger part of a review's
//! parsing time. Field names and shapes follow `k8s_openapi` (so the code reads the same), unknown
//! fields are skipped unread (the unit tests write these types back as JSON: what they hold), and whatever the webhook copies into a patch whole (a volume mount)
//! keeps its full type. The patch is written as precise `add` operations on the original object
//! (see [`crate::mutate::pod`]), so nothing skipped here is ever rewritten or lost.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, VolumeMount};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    pub volumes: Option<Vec<Volume>>,
    pub service_account_name: Option<String>,
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub security_context: Option<PodSecurityContext>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    pub image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    pub env_from: Option<Vec<EnvFromSource>>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub secret_key_ref: Option<KeySelector>,
    pub config_map_key_ref: Option<KeySelector>,
}

/// `secretKeyRef` and `configMapKeyRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct KeySelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    pub secret_ref: Option<LocalObjectReference>,
    pub config_map_ref: Option<LocalObjectReference>,
}

/// `imagePullSecrets` entries, `secretRef` and `configMapRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct LocalObjectReference {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    pub empty_dir: Option<EmptyDirVolumeSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct Probe {
    pub exec: Option<ExecAction>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct ExecAction {
    pub command: Option<Vec<String>>,
}

/// A list or object `k8s_openapi` requires but reads as empty when it is `null` or absent: Go's
/// JSON writes a nil slice as `null`, so `"containers": null` is what the API server sends for a
/// pod without any. Required strings are only defaulted when absent: Go never writes a string as
/// `null`, and reading each one through an `Option` cost 12 % of a review's time here.
fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the API server can send, this model reads as `k8s_openapi` does (the review would be
    /// a 400 otherwise): required lists and objects as `null`, required strings left out.
    #[test]
    fn nulls_and_missing_required_fields_read_as_empty() {
        let doc = json!({"metadata": null, "spec": {"containers": null, "initContainers": [{"env": [{
            "valueFrom": {"secretKeyRef": {}}}], "envFrom": [{"configMapRef": {}}]}],
            "volumes": [{"emptyDir": null}], "imagePullSecrets": [{}]}});
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(doc.clone()).expect("k8s_openapi reads it");
        let pod: Pod = serde_json::from_value(doc).expect("the model reads it");
        let spec = pod.spec.unwrap();
        assert!(spec.containers.is_empty());
        let init = &spec.init_containers.unwrap()[0];
        assert_eq!(init.name, "");
        assert_eq!(init.env.as_ref().unwrap()[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, "");
        assert!(spec.volumes.unwrap()[0].empty_dir.is_none());
    }
}
