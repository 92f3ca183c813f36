//! Bank-Vaults' vault-agent annotations, for an agent that runs the user's own configuration
//! (`vault-agent-configmap`): as a templating sidecar (their case C), or with `vault-agent:
//! "true"` as an init container that logs in for vault-env and renders files before the app
//! starts (case D); and the settings it shares with consul-template (`consul_template.rs`).

use super::keys::*;
use super::values::is_quantity;
use super::vault::AnnotationReader;
use vault_env::config::reader::{EXPECTED_BOOL, parse_bool};

/// Pinned, unlike Bank-Vaults' `hashicorp/vault:latest`.
pub const DEFAULT_AGENT_IMAGE: &str = "hashicorp/vault:1.20.4";
/// consul-template's, pinned at the version our tests build (Bank-Vaults': 0.32.0 of 2023).
pub const DEFAULT_CT_IMAGE: &str = "hashicorp/consul-template:0.41.1";
pub const DEFAULT_SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const DEFAULT_CONFIG_PATH: &str = "/vault/secrets";

/// The webhook's defaults (`VAULT_AGENT`, `VAULT_IMAGE`, `VAULT_IMAGE_PULL_POLICY`,
/// `SERVICE_ACCOUNT_TOKEN_VOLUME_NAME`, `VAULT_CT_IMAGE`, `VAULT_CT_PULL_POLICY`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDefaults {
    pub init: bool,
    pub image: String,
    pub pull_policy: String,
    pub sa_mount_path: String,
    pub ct_image: String,
    pub ct_pull_policy: String,
}

impl Default for AgentDefaults {
    fn default() -> Self {
        AgentDefaults {
            init: false,
            image: DEFAULT_AGENT_IMAGE.into(),
            pull_policy: "IfNotPresent".into(),
            sa_mount_path: DEFAULT_SA_MOUNT_PATH.into(),
            ct_image: DEFAULT_CT_IMAGE.into(),
            ct_pull_policy: "IfNotPresent".into(),
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

/// The vault image and the token it logs in with: for [`AgentConfig`] and [`LoginAgent`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentImage {
    pub image: String,
    pub pull_policy: String,
    /// `service-account-token-volume-name`: the mount path of the token the agent logs in with.
    pub sa_mount_path: String,
}

/// Bank-Vaults' agent with the configuration it generates: a kubernetes login with the pod's
/// role, mount and namespace, its token sunk for consul-template and (`for_vault_env`) vault-env.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginAgent {
    pub image: AgentImage,
    /// `vault-agent: "true"` without a `vault-agent-configmap`: vault-env uses the token
    /// (`VAULT_TOKEN_FILE`), as in Bank-Vaults' case A.
    pub for_vault_env: bool,
}

pub const EXPECTED_QUANTITY: &str = "a Kubernetes quantity such as 100m or 128Mi";
const EXPECTED_ENV: &str = "a JSON list of {\"name\": …, \"value\": …}";

pub fn quantity(s: &str) -> Option<String> {
    is_quantity(s).then(|| s.to_string())
}

pub fn read_agent(r: &mut AnnotationReader<'_, '_>, configmap: String, init: bool, image: &AgentImage, config_path: &str) -> AgentConfig {
    let cpu = r.parsed(VAULT_AGENT_CPU, None, EXPECTED_QUANTITY, |s| quantity(s).map(Some));
    let memory = r.parsed(VAULT_AGENT_MEMORY, None, EXPECTED_QUANTITY, |s| quantity(s).map(Some));
    let cpu_limit = r.parsed(VAULT_AGENT_CPU_LIMIT, "100m".to_string(), EXPECTED_QUANTITY, quantity);
    let memory_limit = r.parsed(VAULT_AGENT_MEMORY_LIMIT, "128Mi".to_string(), EXPECTED_QUANTITY, quantity);
    AgentConfig {
        configmap,
        init,
        once: r.parsed(VAULT_AGENT_ONCE, false, EXPECTED_BOOL, parse_bool),
        native_sidecar: r.parsed(VAULT_AGENT_NATIVE_SIDECAR, false, EXPECTED_BOOL, parse_bool),
        share_process_namespace: r.parsed(VAULT_AGENT_SHARE_PROCESS_NAMESPACE, true, EXPECTED_BOOL, parse_bool),
        image: image.image.clone(),
        pull_policy: image.pull_policy.clone(),
        config_path: config_path.to_string(),
        sa_mount_path: image.sa_mount_path.clone(),
        limits: CpuMemory { cpu: cpu.unwrap_or(cpu_limit), memory: memory.unwrap_or(memory_limit) },
        requests: CpuMemory {
            cpu: r.parsed(VAULT_AGENT_CPU_REQUEST, "100m".to_string(), EXPECTED_QUANTITY, quantity),
            memory: r.parsed(VAULT_AGENT_MEMORY_REQUEST, "128Mi".to_string(), EXPECTED_QUANTITY, quantity),
        },
        env: r.parsed(VAULT_AGENT_ENV_VARIABLES, Vec::new(), EXPECTED_ENV, env_variables),
    }
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
