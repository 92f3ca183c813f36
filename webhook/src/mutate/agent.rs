//! The vault-agent that runs the pod's own configuration (`vault-agent-configmap`), as
//! Bank-Vaults injects it (`../shared/spec/agent-injection.md` §4.2, cases C and D), with its bugs
//! left out: a sidecar beside the app (case C) or, with `vault-agent: "true"`, an init container
//! that logs in and renders before the app starts and leaves its token for vault-env (case D).
//! The rendered files go to a memory volume (`agent-secrets`) mounted in every app container.

use super::pod_parts::{base_mounts, security_context, tls_volume};
use crate::annotations::PodConfig;
use crate::annotations::agent::AgentConfig;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

pub const CONTAINER: &str = "vault-agent";
/// The rendered files.
pub const SECRETS_VOLUME: &str = "agent-secrets";
/// The user's ConfigMap: at `/vault/config/config.hcl` in the sidecar, under `/vault/agent/` in the init container.
pub const SIDECAR_CONFIG_VOLUME: &str = "agent-configmap";
pub const INIT_CONFIG_VOLUME: &str = "vault-agent-config";
/// Bank-Vaults' capabilities for the agent (it may `mlock`, and the image's entrypoint may `setcap`).
const CAPABILITIES: [&str; 6] = ["CHOWN", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "IPC_LOCK"];

/// `VAULT_ADDR`, `VAULT_SKIP_VERIFY`, `VAULT_CACERT` (with a TLS secret), then the pod's
/// `vault-agent-env-variables`.
fn env(config: &PodConfig, pod: &Pod, agent: &AgentConfig) -> Vec<Value> {
    let mut out = vec![
        json!({"name": vault_env::config::VAULT_ADDR, "value": config.vault.addr}),
        json!({"name": vault_env::config::VAULT_SKIP_VERIFY, "value": config.vault.skip_verify.to_string()}),
    ];
    if !config.vault.tls_secret.is_empty() {
        out.push(json!({"name": vault_env::config::VAULT_CACERT, "value": format!("{}ca.crt", tls_volume(pod).1)}));
    }
    out.extend(agent.env.iter().map(|(name, value)| json!({"name": name, "value": value})));
    out
}

/// The service-account token mount of the first app container that has one (the API server's
/// ServiceAccount admission adds it), for the agent's kubernetes login. None when no container has
/// one (Bank-Vaults then adds an empty mount, which the API server rejects).
fn service_account_mount(pod: &Pod, agent: &AgentConfig) -> Option<Value> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let mount = containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path.trim_end_matches('/') == agent.sa_mount_path.trim_end_matches('/'))?;
    serde_json::to_value(mount).ok()
}

fn mounts(config: &PodConfig, pod: &Pod, agent: &AgentConfig, config_mount: Value) -> Vec<Value> {
    let mut out = base_mounts(config, pod);
    out.extend(service_account_mount(pod, agent));
    out.push(app_mount(agent));
    out.push(config_mount);
    out
}

fn agent_security_context(config: &PodConfig, pod: &Pod, ptrace: bool) -> Value {
    let mut sc = security_context(config, pod);
    let mut add: Vec<&str> = CAPABILITIES.to_vec();
    if ptrace {
        add.push("SYS_PTRACE");
    }
    sc["capabilities"]["add"] = json!(add);
    sc
}

fn resources(agent: &AgentConfig) -> Value {
    json!({
        "limits": {"cpu": agent.limits.cpu, "memory": agent.limits.memory},
        "requests": {"cpu": agent.requests.cpu, "memory": agent.requests.memory},
    })
}

/// Case C: the agent beside the app, rendering templates for as long as the pod runs (the
/// image's entrypoint runs: `args` only, as in Bank-Vaults).
pub fn sidecar(config: &PodConfig, pod: &Pod, agent: &AgentConfig) -> Value {
    let mut args = vec!["agent", "-config", "/vault/config/config.hcl"];
    if agent.once {
        args.push("-exit-after-auth");
    }
    let config_mount = json!({"name": SIDECAR_CONFIG_VOLUME, "mountPath": "/vault/config/config.hcl", "subPath": "config.hcl", "readOnly": true});
    json!({
        "name": CONTAINER,
        "image": agent.image,
        "imagePullPolicy": agent.pull_policy,
        "args": args,
        "env": env(config, pod, agent),
        "volumeMounts": mounts(config, pod, agent, config_mount),
        "securityContext": agent_security_context(config, pod, agent.share_process_namespace),
        "resources": resources(agent),
    })
}

/// Case D: the agent before the app: logs in, renders, sinks its token at
/// [`super::pod_parts::AGENT_TOKEN_FILE`] for vault-env, and exits.
pub fn init(config: &PodConfig, pod: &Pod, agent: &AgentConfig) -> Value {
    let config_mount = json!({"name": INIT_CONFIG_VOLUME, "mountPath": "/vault/agent/", "readOnly": true});
    json!({
        "name": CONTAINER,
        "image": agent.image,
        "imagePullPolicy": agent.pull_policy,
        "command": ["vault", "agent", "-config=/vault/agent/config.hcl", "-exit-after-auth"],
        "env": env(config, pod, agent),
        "volumeMounts": mounts(config, pod, agent, config_mount),
        "securityContext": agent_security_context(config, pod, false),
        "resources": resources(agent),
    })
}

/// The rendered files in an app container.
pub fn app_mount(agent: &AgentConfig) -> Value {
    json!({"name": SECRETS_VOLUME, "mountPath": agent.config_path})
}

/// The agent's volumes: the rendered files (memory) and the user's configuration.
pub fn volumes(agent: &AgentConfig) -> Vec<Value> {
    let config_volume = if agent.init { INIT_CONFIG_VOLUME } else { SIDECAR_CONFIG_VOLUME };
    vec![
        json!({"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory"}}),
        json!({"name": config_volume, "configMap": {"name": agent.configmap, "defaultMode": 420, "items": [{"key": "config.hcl", "path": "config.hcl"}]}}),
    ]
}
