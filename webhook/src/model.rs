//! The parts of a Pod the webhook reads, and nothing else. Reviews arrive as JSON; reading them
//! into `k8s_openapi`'s `Pod` built every field of every container (a `Container` is about 1.6 kB
//! of struct before its strings) only to look at a dozen: that was the larger part of a review's
//! parsing time. Field names and shapes follow `k8s_openapi` (so the code reads the same), unknown
//! fields are skipped unread (the unit tests write these types back as JSON: what they hold), and whatever the webhook copies into a patch whole (a volume mount)
//! keeps every field `k8s_openapi` knows. The patch is written as precise `add` operations on the original object
//! (see [`crate::mutate::pod`]), so nothing skipped here is ever rewritten or lost.

//!
//! Strings are [`Text`]: borrowed from the request's body when the JSON string has no escapes
//! (names, images, commands, variables almost never do), so reading a pod copies little.

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct Pod<'a> {
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta<'a>,
    pub spec: Option<PodSpec<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta<'a> {
    pub name: Option<Text<'a>>,
    pub generate_name: Option<Text<'a>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct PodSpec<'a> {
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container<'a>>,
    pub init_containers: Option<Vec<Container<'a>>>,
    pub volumes: Option<Vec<Volume<'a>>>,
    pub service_account_name: Option<Text<'a>>,
    pub image_pull_secrets: Option<Vec<LocalObjectReference<'a>>>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub security_context: Option<PodSecurityContext>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(default)]
    pub name: Text<'a>,
    pub image: Option<Text<'a>>,
    pub image_pull_policy: Option<Text<'a>>,
    pub command: Option<Vec<Text<'a>>>,
    pub args: Option<Vec<Text<'a>>>,
    pub env: Option<EnvList<'a>>,
    pub env_from: Option<Vec<EnvFromSource<'a>>>,
    pub volume_mounts: Option<Vec<VolumeMount<'a>>>,
    // Boxed, as the variables' `valueFrom`: a container is moved a few times while it is read.
    pub liveness_probe: Option<Box<Probe<'a>>>,
    pub readiness_probe: Option<Box<Probe<'a>>>,
    pub startup_probe: Option<Box<Probe<'a>>>,
}

/// A container's `env`: its variables, and the list's JSON text as the review carried it, so that
/// vault-env's variables are appended in one patch operation that writes the list back as it came
/// followed by them ([`crate::mutate::patch::AddOps::add_to_list`]). The API server applies a
/// patch operation by operation: a dozen appends per container cost it more than one list.
#[derive(Debug, Clone, Default)]
pub struct EnvList<'a> {
    pub vars: Vec<EnvVar<'a>>,
    /// The JSON array, verbatim (empty for a list not read from JSON: then each variable is
    /// appended on its own).
    pub json: &'a str,
}

impl<'a> Deref for EnvList<'a> {
    type Target = [EnvVar<'a>];
    fn deref(&self) -> &[EnvVar<'a>] {
        &self.vars
    }
}

impl<'l, 'a> IntoIterator for &'l EnvList<'a> {
    type Item = &'l EnvVar<'a>;
    type IntoIter = std::slice::Iter<'l, EnvVar<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.vars.iter()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for EnvList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        let json = raw.get();
        // The reader's position is the end of the list: the message says what, not where.
        let vars = serde_json::from_str(json).map_err(|e| {
            let message = e.to_string();
            let what = message.rsplit_once(" at line ").map_or(message.as_str(), |(what, _)| what);
            serde::de::Error::custom(format_args!("env: {what}"))
        })?;
        Ok(EnvList { vars, json })
    }
}

#[cfg(test)]
impl serde::Serialize for EnvList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.vars.serialize(s)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct EnvVar<'a> {
    #[serde(default)]
    pub name: Text<'a>,
    pub value: Option<Text<'a>>,
    /// Boxed: most variables have none, and a variable is moved a few times while it is read.
    pub value_from: Option<Box<EnvVarSource<'a>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource<'a> {
    pub secret_key_ref: Option<KeySelector<'a>>,
    pub config_map_key_ref: Option<KeySelector<'a>>,
}

/// `secretKeyRef` and `configMapKeyRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct KeySelector<'a> {
    #[serde(default)]
    pub name: Text<'a>,
    #[serde(default)]
    pub key: Text<'a>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource<'a> {
    pub secret_ref: Option<LocalObjectReference<'a>>,
    pub config_map_ref: Option<LocalObjectReference<'a>>,
}

/// `imagePullSecrets` entries, `secretRef` and `configMapRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct LocalObjectReference<'a> {
    #[serde(default)]
    pub name: Text<'a>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct Volume<'a> {
    #[serde(default)]
    pub name: Text<'a>,
    pub empty_dir: Option<EmptyDirVolumeSource>,
}

/// A container's volume mount, every field `k8s_openapi`'s has, borrowed: the agents copy the
/// service-account token's mount whole, and `k8s_openapi`'s two owned strings and its reader took
/// 7 % of a review's time for one mount per container. Written as `k8s_openapi` writes it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(bound(deserialize = "'de: 'a"))]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount<'a> {
    #[serde(default)]
    pub mount_path: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_propagation: Option<Text<'a>>,
    #[serde(default)]
    pub name: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursive_read_only: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_path_expr: Option<Text<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Probe<'a> {
    pub exec: Option<ExecAction<'a>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct ExecAction<'a> {
    pub command: Option<Vec<Text<'a>>>,
}

/// A string of the review, borrowed from the body when its JSON has no escapes, else copied.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visitor).map(Text)
    }
}

impl serde::Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A model type read from JSON in a test (the text is leaked: the model borrows from it).
#[cfg(test)]
pub fn from_json<T: Deserialize<'static>>(doc: serde_json::Value) -> T {
    serde_json::from_str(Box::leak(doc.to_string().into_boxed_str())).expect("the model reads the document")
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

    /// Strings with escapes are read as text (copied out of the body); the rest borrow from it.
    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let body = r#"{"spec": {"containers": [{"name": "app", "image": "r/app:1", "command": ["/bin/sh", "-c", "echo \"$A\"\n\u00e9"],
            "env": [{"name": "A", "value": "vault:secret/data/a#b"}, {"name": "B", "value": "x\\y"}]}]}}"#;
        let pod: Pod = serde_json::from_str(body).expect("the model reads it");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let command: Vec<&str> = c.command.iter().flatten().map(|t| &**t).collect();
        assert_eq!(command, ["/bin/sh", "-c", "echo \"$A\"\n\u{e9}"]);
        let env = c.env.as_ref().unwrap();
        assert_eq!((&*env[0].value.as_ref().unwrap().0, &*env[1].value.as_ref().unwrap().0), ("vault:secret/data/a#b", "x\\y"));
        assert!(matches!(c.name.0, Cow::Borrowed("app")) && matches!(env[0].value.as_ref().unwrap().0, Cow::Borrowed(_)));
        assert!(matches!(c.command.as_ref().unwrap()[2].0, Cow::Owned(_)) && matches!(env[1].value.as_ref().unwrap().0, Cow::Owned(_)));
        assert!(serde_json::from_str::<Pod>(r#"{"spec": {"containers": [{"name": 1}]}}"#).is_err(), "a number is not a name");
    }

    /// A container's `env` keeps its JSON text verbatim beside the variables read from it; an
    /// `env` that is not a list is an error naming `env` once, with the review's position.
    #[test]
    fn env_lists_keep_their_text() {
        let body = r#"{"spec": {"containers": [{"name": "a", "env": [ {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}} ,
            {"name": "B", "value": "1"}]}]}}"#;
        let pod: Pod = serde_json::from_str(body).expect("the model reads it");
        let env = pod.spec.as_ref().unwrap().containers[0].env.as_ref().unwrap();
        assert_eq!(env.iter().map(|v| &*v.name).collect::<Vec<_>>(), ["A", "B"]);
        assert!(body.contains(env.json) && env.json.starts_with("[ {") && env.json.ends_with("\"1\"}]"), "{}", env.json);
        let err = serde_json::from_str::<Pod>(r#"{"spec": {"containers": [{"name": "a", "env": {"A": 1}}]}}"#).unwrap_err().to_string();
        assert!(err.starts_with("env: invalid type: map, expected a sequence at line 1 column "), "{err}");
        assert_eq!(err.matches(" at line ").count(), 1, "{err}");
    }

    /// A volume mount is written back as `k8s_openapi` writes it, every field kept.
    #[test]
    fn volume_mounts_are_written_as_k8s_openapi_writes_them() {
        for mount in [
            json!({"name": "t", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}),
            json!({"name": "t", "mountPath": "/m", "mountPropagation": "HostToContainer", "readOnly": false,
                "recursiveReadOnly": "IfPossible", "subPath": "a", "subPathExpr": "$(POD)", "unknown": 1}),
            json!({"mountPath": "/m"}),
        ] {
            let theirs: k8s_openapi::api::core::v1::VolumeMount = serde_json::from_value(mount.clone()).unwrap();
            let ours: VolumeMount = from_json(mount.clone());
            assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&theirs).unwrap(), "{mount}");
        }
    }

    /// What the API server can send, this model reads as `k8s_openapi` does (the review would be
    /// a 400 otherwise): required lists and objects as `null`, required strings left out.
    #[test]
    fn nulls_and_missing_required_fields_read_as_empty() {
        let doc = json!({"metadata": null, "spec": {"containers": null, "initContainers": [{"env": [{
            "valueFrom": {"secretKeyRef": {}}}], "envFrom": [{"configMapRef": {}}]}],
            "volumes": [{"emptyDir": null}], "imagePullSecrets": [{}]}});
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(doc.clone()).expect("k8s_openapi reads it");
        let pod: Pod = from_json(doc);
        let spec = pod.spec.unwrap();
        assert!(spec.containers.is_empty());
        let init = &spec.init_containers.unwrap()[0];
        assert_eq!(init.name, "");
        assert_eq!(init.env.as_ref().unwrap()[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, "");
        assert!(spec.volumes.unwrap()[0].empty_dir.is_none());
    }
}
