//! The vault-agent that runs the pod's own configuration (`vault-agent-configmap`), as
//! Bank-Vaults injects it (the two shapes Bank-Vaults calls cases C and D), with its bugs
//! left out: a sidecar beside the app (case C) or, with `vault-agent: "true"`, an init container
//! that logs in and renders before the app starts and leaves its token for vault-env (case D).
//! The rendered files go to a memory volume (`agent-secrets`) mounted in every app container.

use super::pod_parts::{
    CpuMemory, LOGIN_TOKEN_DIR, LOGIN_TOKEN_FILE, LOGIN_TOKEN_VOLUME, Resources, SecurityContext, base_mounts, copy_resources, security_context,
    tls_volume,
};
use crate::annotations::PodConfig;
use crate::annotations::agent::{AgentConfig, LoginAgent};
use crate::model::Pod;
use serde_json::{Value, json};

pub const CONTAINER: &str = "vault-agent";
/// The rendered files.
pub const SECRETS_VOLUME: &str = "agent-secrets";
/// The user's ConfigMap: at `/vault/config/config.hcl` in the sidecar, under `/vault/agent/` in the init container.
pub const SIDECAR_CONFIG_VOLUME: &str = "agent-configmap";
pub const INIT_CONFIG_VOLUME: &str = "vault-agent-config";
/// The login agent's configuration (from its env) is written to this memory volume, at Bank-Vaults' path.
pub const LOGIN_CONFIG_VOLUME: &str = "vault-agent-config";
const LOGIN_CONFIG_DIR: &str = "/vault/agent/";
const LOGIN_CONFIG_ENV: &str = "AGENT_CONFIG";
/// Bank-Vaults' capabilities for the agent (it may `mlock`, and the image's entrypoint may `setcap`).
const CAPABILITIES: [&str; 6] = ["CHOWN", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "IPC_LOCK"];

/// `VAULT_ADDR`, `VAULT_SKIP_VERIFY`, `VAULT_CACERT` (with a TLS secret), then `extra` (the
/// pod's `vault-agent-env-variables`): what every agent and consul-template container gets.
pub fn env(config: &PodConfig, pod: &Pod, extra: &[(String, String)]) -> Vec<Value> {
    let mut out = vec![
        json!({"name": vault_env::config::VAULT_ADDR, "value": config.vault.addr}),
        json!({"name": vault_env::config::VAULT_SKIP_VERIFY, "value": config.vault.skip_verify.to_string()}),
    ];
    if !config.vault.tls_secret.is_empty() {
        out.push(json!({"name": vault_env::config::VAULT_CACERT, "value": format!("{}ca.crt", tls_volume(pod).1)}));
    }
    out.extend(extra.iter().map(|(name, value)| json!({"name": name, "value": value})));
    out
}

/// The service-account token mount of the first app container that has one (the API server's
/// ServiceAccount admission adds it), for the agent's kubernetes login. None when no container has
/// one (Bank-Vaults then adds an empty mount, which the API server rejects).
fn service_account_mount(pod: &Pod, sa_mount_path: &str) -> Option<Value> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let mount = containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path.trim_end_matches('/') == sa_mount_path.trim_end_matches('/'))?;
    serde_json::to_value(mount).ok()
}

fn mounts(config: &PodConfig, pod: &Pod, agent: &AgentConfig, config_mount: Value) -> Vec<Value> {
    let mut out = base_mounts(config, pod);
    out.extend(service_account_mount(pod, &agent.sa_mount_path));
    out.push(app_mount(agent));
    out.push(config_mount);
    out
}

fn agent_security_context(config: &PodConfig, pod: &Pod, ptrace: bool) -> SecurityContext {
    let mut sc = security_context(config, pod);
    sc.capabilities.add = CAPABILITIES.to_vec();
    if ptrace {
        sc.capabilities.add.push("SYS_PTRACE");
    }
    sc
}

fn resources(agent: &AgentConfig) -> Resources<'_> {
    Resources {
        limits: CpuMemory { cpu: &agent.limits.cpu, memory: &agent.limits.memory },
        requests: CpuMemory { cpu: &agent.requests.cpu, memory: &agent.requests.memory },
    }
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
        "env": env(config, pod, &agent.env),
        "volumeMounts": mounts(config, pod, agent, config_mount),
        "securityContext": agent_security_context(config, pod, agent.share_process_namespace),
        "resources": resources(agent),
    })
}

/// Case D: the agent before the app: logs in, renders, sinks its token where the pod's
/// configuration says (Bank-Vaults documents [`super::pod_parts::AGENT_TOKEN_FILE`]) for
/// vault-env, and exits.
pub fn init(config: &PodConfig, pod: &Pod, agent: &AgentConfig) -> Value {
    let config_mount = json!({"name": INIT_CONFIG_VOLUME, "mountPath": "/vault/agent/", "readOnly": true});
    json!({
        "name": CONTAINER,
        "image": agent.image,
        "imagePullPolicy": agent.pull_policy,
        "command": ["vault", "agent", "-config=/vault/agent/config.hcl", "-exit-after-auth"],
        "env": env(config, pod, &agent.env),
        "volumeMounts": mounts(config, pod, agent, config_mount),
        "securityContext": agent_security_context(config, pod, false),
        "resources": resources(agent),
    })
}

/// The agent that only logs in and sinks its token at [`LOGIN_TOKEN_FILE`], in a volume of its
/// own (for consul-template and, in case A, vault-env),
/// with the configuration Bank-Vaults generates into a ConfigMap per owner: here it travels in
/// the container's env and the shell writes it to a memory volume, so the webhook creates no
/// object (nothing leaks, no RBAC to create ConfigMaps, nothing written on a dry run). JSON, as
/// the agent reads it, so no annotation value can change its structure.
pub fn login_init(config: &PodConfig, pod: &Pod, login: &LoginAgent, name: &str) -> Value {
    let mut env = env(config, pod, &[]);
    env.push(json!({"name": LOGIN_CONFIG_ENV, "value": login_config(config, login)}));
    let mut mounts = base_mounts(config, pod);
    mounts.extend(service_account_mount(pod, &login.image.sa_mount_path));
    mounts.push(json!({"name": LOGIN_CONFIG_VOLUME, "mountPath": LOGIN_CONFIG_DIR}));
    mounts.push(json!({"name": LOGIN_TOKEN_VOLUME, "mountPath": LOGIN_TOKEN_DIR}));
    let script = format!(
        "printf '%s' \"${LOGIN_CONFIG_ENV}\" > {LOGIN_CONFIG_DIR}config.json && exec vault agent -config={LOGIN_CONFIG_DIR}config.json -exit-after-auth"
    );
    json!({
        "name": name,
        "image": login.image.image,
        "imagePullPolicy": login.image.pull_policy,
        "command": ["/bin/sh", "-ec", script],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": agent_security_context(config, pod, false),
        "resources": copy_resources(config),
    })
}

/// Bank-Vaults' generated `config.hcl`, as JSON: a kubernetes login with the pod's role, mount and
/// namespace, with the token at the service-account mount, sunk at [`LOGIN_TOKEN_FILE`].
pub fn login_config(config: &PodConfig, login: &LoginAgent) -> String {
    let mut method = json!({
        "type": "kubernetes",
        "mount_path": format!("auth/{}", config.vault.path.trim_matches('/')),
        "config": {"role": config.vault.role, "token_path": format!("{}/token", login.image.sa_mount_path.trim_end_matches('/'))},
    });
    if !config.vault.namespace.is_empty() {
        method["namespace"] = json!(config.vault.namespace);
    }
    json!({"auto_auth": {"method": method, "sink": [{"type": "file", "config": {"path": LOGIN_TOKEN_FILE}}]}}).to_string()
}

/// The memory volumes the login agent writes its configuration and its token to.
pub fn login_volumes() -> Vec<Value> {
    vec![
        json!({"name": LOGIN_CONFIG_VOLUME, "emptyDir": {"medium": "Memory"}}),
        json!({"name": LOGIN_TOKEN_VOLUME, "emptyDir": {"medium": "Memory"}}),
    ]
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
