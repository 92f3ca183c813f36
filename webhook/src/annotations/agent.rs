//! Bank-Vaults' vault-agent annotations, for an agent that runs the user's own configuration
//! (`vault-agent-configmap`): as a templating sidecar (their case C), or with `vault-agent:
//! "true"` as an init container that logs in for vault-env and renders files before the app
//! starts (case D). `../shared/spec/agent-injection.md` §4.2 has what Bank-Vaults injects.

use super::keys::*;
use super::values::{EXPECTED_PULL_POLICY, is_quantity, pull_policy};
use super::vault::{AnnotationReader, EXPECTED_KUBE_NAME, kube_name};
use vault_env::config::reader::{EXPECTED_BOOL, FieldError, parse_bool};

/// Pinned, unlike Bank-Vaults' `hashicorp/vault:latest`.
pub const DEFAULT_AGENT_IMAGE: &str = "hashicorp/vault:1.20.4";
pub const DEFAULT_SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const DEFAULT_CONFIG_PATH: &str = "/vault/secrets";

/// The webhook's defaults (`VAULT_AGENT`, `VAULT_IMAGE`, `VAULT_IMAGE_PULL_POLICY`,
/// `SERVICE_ACCOUNT_TOKEN_VOLUME_NAME`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDefaults {
    pub init: bool,
    pub image: String,
    pub pull_policy: String,
    pub sa_mount_path: String,
}

impl Default for AgentDefaults {
    fn default() -> Self {
        AgentDefaults {
            init: false,
            image: DEFAULT_AGENT_IMAGE.into(),
            pull_policy: "IfNotPresent".into(),
            sa_mount_path: DEFAULT_SA_MOUNT_PATH.into(),
        }
    }
}

/// A quantity pair, as Kubernetes writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuMemory {
    pub cpu: String,
    pub memory: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The user's ConfigMap with the agent's `config.hcl`.
    pub configmap: String,
    /// `vault-agent: "true"`: an init container that logs in (and renders) before the app, and
    /// whose token vault-env uses (`VAULT_TOKEN_FILE`); else a sidecar beside the app.
    pub init: bool,
    /// `vault-agent-once`: the sidecar exits after its first login (`-exit-after-auth`).
    pub once: bool,
    /// `vault-agent-native-sidecar` (ours): the sidecar as an init container with
    /// `restartPolicy: Always` (Kubernetes 1.29+): it starts before the app and does not keep a
    /// Job from finishing.
    pub native_sidecar: bool,
    /// `vault-agent-share-process-namespace` (default true: a template `command` may signal the app).
    pub share_process_namespace: bool,
    pub image: String,
    pub pull_policy: String,
    /// `vault-configfile-path` (else `vault-ct-secrets-mount-path`): where the rendered files are
    /// mounted, in the agent and in every app container.
    pub config_path: String,
    /// `service-account-token-volume-name`: the mount path of the token the agent logs in with.
    pub sa_mount_path: String,
    pub limits: CpuMemory,
    pub requests: CpuMemory,
    /// `vault-agent-env-variables`: a JSON list of `{"name", "value"}` (either case, as Go reads it).
    pub env: Vec<(String, String)>,
}

const EXPECTED_QUANTITY: &str = "a Kubernetes quantity such as 100m or 128Mi";
const EXPECTED_ENV: &str = "a JSON list of {\"name\": …, \"value\": …}";

/// The agent's settings when the pod asks for one with its own configuration, else `None`.
pub fn read_agent(r: &mut AnnotationReader<'_, '_>, d: &AgentDefaults) -> Option<AgentConfig> {
    let configmap = r.parsed(VAULT_AGENT_CONFIGMAP, String::new(), EXPECTED_KUBE_NAME, kube_name);
    if configmap.is_empty() {
        return None;
    }
    let quantity = |s: &str| is_quantity(s).then(|| s.to_string());
    let cpu = r.parsed(VAULT_AGENT_CPU, None, EXPECTED_QUANTITY, |s| quantity(s).map(Some));
    let memory = r.parsed(VAULT_AGENT_MEMORY, None, EXPECTED_QUANTITY, |s| quantity(s).map(Some));
    let cpu_limit = r.parsed(VAULT_AGENT_CPU_LIMIT, "100m".to_string(), EXPECTED_QUANTITY, quantity);
    let memory_limit = r.parsed(VAULT_AGENT_MEMORY_LIMIT, "128Mi".to_string(), EXPECTED_QUANTITY, quantity);
    let fallback_path = r.string(VAULT_CT_SECRETS_MOUNT_PATH, DEFAULT_CONFIG_PATH);
    let config_path = r.string(VAULT_CONFIGFILE_PATH, &fallback_path);
    if !config_path.starts_with('/') {
        let name = r.name_of(VAULT_CONFIGFILE_PATH).or_else(|| r.name_of(VAULT_CT_SECRETS_MOUNT_PATH)).unwrap_or_default();
        r.push(FieldError::invalid(name, &config_path, "an absolute path"));
    }
    Some(AgentConfig {
        configmap,
        init: r.parsed(VAULT_AGENT, d.init, EXPECTED_BOOL, parse_bool),
        once: r.parsed(VAULT_AGENT_ONCE, false, EXPECTED_BOOL, parse_bool),
        native_sidecar: r.parsed(VAULT_AGENT_NATIVE_SIDECAR, false, EXPECTED_BOOL, parse_bool),
        share_process_namespace: r.parsed(VAULT_AGENT_SHARE_PROCESS_NAMESPACE, true, EXPECTED_BOOL, parse_bool),
        image: r.string(VAULT_IMAGE, &d.image),
        pull_policy: r.parsed(VAULT_IMAGE_PULL_POLICY, d.pull_policy.clone(), EXPECTED_PULL_POLICY, pull_policy),
        config_path,
        sa_mount_path: r.string(SERVICE_ACCOUNT_TOKEN_VOLUME_NAME, &d.sa_mount_path),
        limits: CpuMemory { cpu: cpu.unwrap_or(cpu_limit), memory: memory.unwrap_or(memory_limit) },
        requests: CpuMemory {
            cpu: r.parsed(VAULT_AGENT_CPU_REQUEST, "100m".to_string(), EXPECTED_QUANTITY, quantity),
            memory: r.parsed(VAULT_AGENT_MEMORY_REQUEST, "128Mi".to_string(), EXPECTED_QUANTITY, quantity),
        },
        env: r.parsed(VAULT_AGENT_ENV_VARIABLES, Vec::new(), EXPECTED_ENV, env_variables),
    })
}

/// Go's `json.Unmarshal` into `[]corev1.EnvVar` matches field names case-insensitively, so both
/// `[{"name": …}]` and Bank-Vaults' documented `[{"Name": …}]` work.
fn env_variables(s: &str) -> Option<Vec<(String, String)>> {
    let list: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(s).ok()?;
    list.iter()
        .map(|entry| {
            let field = |f: &str| entry.iter().find(|(k, _)| k.eq_ignore_ascii_case(f)).and_then(|(_, v)| v.as_str());
            let name = field("name").filter(|n| !n.is_empty())?;
            Some((name.to_string(), field("value").unwrap_or("").to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_variables_as_go_reads_them() {
        assert_eq!(env_variables(r#"[{"Name": "SKIP_SETCAP","Value": "1"}]"#), Some(vec![("SKIP_SETCAP".into(), "1".into())]));
        assert_eq!(env_variables(r#"[{"name": "A"}]"#), Some(vec![("A".into(), String::new())]));
        assert_eq!(env_variables("not json"), None);
        assert_eq!(env_variables(r#"[{"value": "x"}]"#), None);
    }
}
