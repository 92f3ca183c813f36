//! Pull secrets: the credentials of `kubernetes.io/dockerconfigjson` (and legacy `dockercfg`)
//! Secrets, by registry host. Passwords live in the core's `SecretString`.

use crate::fetch::cache::Cached;
use crate::fetch::kube::{ApiError, KubeApi};
use crate::model::Pod;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use vault_env::SecretString;

/// One registry entry of a `kubernetes.io/dockerconfigjson` (or legacy `dockercfg`) Secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerAuth {
    /// Normalized host (`docker.io` for Docker Hub's aliases).
    pub registry: String,
    pub username: String,
    pub password: SecretString,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerEntry>,
}

#[derive(Deserialize, Default)]
struct DockerEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://index.docker.io/v1/` → `docker.io`; `registry:5000/path` → `registry:5000`.
pub fn normalize_registry(key: &str) -> String {
    let host = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// Why a pull secret (or docker config) gives no credentials. Names the key and the registry
/// entry, never a credential.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PullSecretError {
    #[error("{key} is not valid JSON: {error}")]
    NotJson { key: &'static str, error: String },
    #[error("neither .dockerconfigjson nor .dockercfg")]
    NoConfig,
    #[error("auth of {registry} is not {expected}")]
    BadAuth { registry: String, expected: &'static str },
}

/// Credentials from a pull secret's data (`.dockerconfigjson` or `.dockercfg`); entries that
/// carry no username/password (e.g. only an identity token) are skipped.
pub fn parse_pull_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<Vec<DockerAuth>, PullSecretError> {
    let not_json = |key, e: serde_json::Error| PullSecretError::NotJson { key, error: e.to_string() };
    let entries: BTreeMap<String, DockerEntry> = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<DockerConfig>(json).map_err(|e| not_json(".dockerconfigjson", e))?.auths
    } else if let Some(json) = data.get(".dockercfg") {
        serde_json::from_slice(json).map_err(|e| not_json(".dockercfg", e))?
    } else {
        return Err(PullSecretError::NoConfig);
    };
    let mut out = Vec::new();
    for (key, entry) in entries {
        let (username, password) = match (entry.username, entry.password, entry.auth) {
            (Some(u), Some(p), _) if !u.is_empty() => (u, p),
            (_, _, Some(auth)) if !auth.is_empty() => {
                let bad = |expected| PullSecretError::BadAuth { registry: key.clone(), expected };
                let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad("base64"))?;
                let text = String::from_utf8(decoded).map_err(|_| bad("text"))?;
                let (u, p) = text.split_once(':').ok_or_else(|| bad("user:password"))?;
                (u.to_string(), p.to_string())
            }
            _ => continue,
        };
        out.push(DockerAuth { registry: normalize_registry(&key), username, password: SecretString::new(password) });
    }
    Ok(out)
}

/// The pull secret for pods that name none (`DEFAULT_IMAGE_PULL_SECRET*`).
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultPullSecret {
    pub secret: String,
    pub namespace: String,
    /// Its ServiceAccount's pull secrets are used too (may be empty).
    pub service_account: String,
}

/// Pull credentials as the kubelet would use them: the pod's `imagePullSecrets`, then its
/// ServiceAccount's; with none on the pod, the webhook's `DEFAULT_IMAGE_PULL_SECRET*`. Kept for
/// `REGISTRY_CREDENTIALS_TTL` by (pull secrets, ServiceAccount), which spares the Kubernetes reads
/// on every pod of a Deployment; one read per key at a time.
pub struct PullCredentials {
    default: Option<DefaultPullSecret>,
    cache: Cached<CredentialsKey, Vec<DockerAuth>>,
}

/// (namespace, name) of each pull secret, and the ServiceAccount's namespace and name.
type CredentialsKey = (Vec<(String, String)>, String, String);

impl PullCredentials {
    pub fn new(default: Option<DefaultPullSecret>, cache_size: usize, ttl: Duration) -> PullCredentials {
        PullCredentials { default, cache: Cached::new(cache_size, ttl) }
    }

    pub async fn for_pod(&self, kube: &KubeApi, pod: &Pod<'_>, namespace: &str) -> Result<Vec<DockerAuth>, ApiError> {
        let spec = pod.spec.as_ref();
        let mut secrets: Vec<(String, String)> = spec
            .and_then(|s| s.image_pull_secrets.as_ref())
            .iter()
            .flat_map(|v| v.iter())
            .map(|r| (namespace.to_string(), r.name.to_string()))
            .collect();
        let (sa_namespace, sa_name) = match (&self.default, secrets.is_empty()) {
            (Some(d), true) => {
                secrets.push((d.namespace.clone(), d.secret.clone()));
                (d.namespace.clone(), d.service_account.clone())
            }
            _ => (namespace.to_string(), spec.and_then(|s| s.service_account_name.as_deref()).unwrap_or("default").to_string()),
        };
        let key = (secrets.clone(), sa_namespace.clone(), sa_name.clone());
        let got = self.cache.get_or_fetch(&key, async || read(kube, secrets, &sa_namespace, &sa_name).await).await?;
        Ok(got.value())
    }
}

async fn read(kube: &KubeApi, mut secrets: Vec<(String, String)>, sa_namespace: &str, sa_name: &str) -> Result<Vec<DockerAuth>, ApiError> {
    if !sa_name.is_empty()
        && let Some(sa) = kube.service_account(sa_namespace, sa_name).await?
    {
        secrets.extend(sa.image_pull_secrets.iter().flatten().map(|r| (sa_namespace.to_string(), r.name.clone())));
    }
    let mut out = Vec::new();
    for (ns, name) in secrets {
        match kube.secret(&ns, &name).await? {
            None => tracing::warn!(secret = %format!("{ns}/{name}"), "image pull secret not found; skipped"),
            Some(secret) => {
                let data: BTreeMap<String, Vec<u8>> = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                match parse_pull_secret(&data) {
                    Ok(creds) => out.extend(creds),
                    Err(why) => tracing::warn!(secret = %format!("{ns}/{name}"), "image pull secret skipped: {why}"),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &str, json: &str) -> BTreeMap<String, Vec<u8>> {
        [(key.to_string(), json.as_bytes().to_vec())].into()
    }

    #[test]
    fn pull_secrets() {
        let auth = STANDARD.encode("bob:pa:ss");
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"reg.example:5000":{{"username":"u","password":"p","email":"e"}},"token-only.io":{{"identitytoken":"x"}}}}}}"#
        );
        let creds = parse_pull_secret(&secret(".dockerconfigjson", &json)).unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!((creds[0].registry.as_str(), creds[0].username.as_str(), creds[0].password.expose()), ("docker.io", "bob", "pa:ss"));
        assert_eq!((creds[1].registry.as_str(), creds[1].username.as_str()), ("reg.example:5000", "u"));
        let legacy = parse_pull_secret(&secret(".dockercfg", r#"{"quay.io":{"username":"q","password":"w"}}"#)).unwrap();
        assert_eq!(legacy[0].registry, "quay.io");
        let not_json = parse_pull_secret(&secret(".dockerconfigjson", "{")).unwrap_err();
        assert!(not_json.to_string().starts_with(".dockerconfigjson is not valid JSON: "), "{not_json}");
        assert_eq!(
            parse_pull_secret(&secret(".dockerconfigjson", r#"{"auths":{"r":{"auth":"***"}}}"#)).unwrap_err().to_string(),
            "auth of r is not base64"
        );
        assert_eq!(parse_pull_secret(&BTreeMap::new()).unwrap_err(), PullSecretError::NoConfig);
        assert!(!format!("{:?}", creds[0]).contains("pa:ss"), "Debug never shows the password");
    }
}
