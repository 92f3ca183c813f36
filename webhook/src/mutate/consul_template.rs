//! consul-template with the pod's own configuration (`vault-ct-configmap`), as Bank-Vaults injects
//! it (Bank-Vaults' case B): a sidecar first among the containers or,
//! with `vault-ct-once`, an init container that renders once before the app. It renders into a
//! memory volume (`ct-secrets`) that every app container mounts, with the token an init agent
//! sinks into the `vault-env` volume, which is its `$HOME` (it reads `~/.vault-token`).

use super::agent::env;
use super::pod_parts::{LOGIN_TOKEN_VOLUME, TOKEN_MOUNT_PATH, VOLUME, base_mounts, security_context};
use crate::annotations::PodConfig;
use crate::annotations::consul_template::CtConfig;
use crate::model::Pod;
use serde_json::{Value, json};

pub const CONTAINER: &str = "consul-template";
/// The rendered files.
pub const SECRETS_VOLUME: &str = "ct-secrets";
/// The user's ConfigMap, at `CONFIG_FILE`.
pub const CONFIG_VOLUME: &str = "ct-configmap";
const CONFIG_FILE: &str = "/vault/ct-config/config.hcl";
/// The image's user's home, where the `vault-env` volume (with the agent's token) is mounted.
const HOME: &str = "/home/consul-template";

/// The consul-template container (the image's entrypoint runs: `args` only, as in Bank-Vaults).
/// `HOME` is set (ours), so `~/.vault-token` is the sunk token under any `runAsUser`. With
/// `token-auth-mount` it reads that token instead (no login agent comes then).
pub fn container(config: &PodConfig, pod: &Pod, ct: &CtConfig) -> Value {
    let mut args = vec!["-config".to_string(), CONFIG_FILE.to_string()];
    if ct.once {
        args.push("-once".into());
    }
    let mut env = env(config, pod, &[]);
    env.push(json!({"name": "HOME", "value": HOME}));
    let mut mounts = base_mounts(config, pod);
    mounts.push(app_mount(ct));
    // ~/.vault-token: the login agent's token, or the pod's own init agent's (in /vault/).
    if config.token_auth_mount.is_none() {
        let volume = if config.login_agent.is_some() { LOGIN_TOKEN_VOLUME } else { VOLUME };
        mounts.push(json!({"name": volume, "mountPath": HOME, "readOnly": true}));
    }
    mounts.push(json!({"name": CONFIG_VOLUME, "mountPath": CONFIG_FILE, "subPath": "config.hcl", "readOnly": true}));
    if let Some((volume, file)) = &config.token_auth_mount {
        // The pod's own token (`token-auth-mount`), read where it is and renewed by its owner.
        mounts.push(json!({"name": volume, "mountPath": TOKEN_MOUNT_PATH, "readOnly": true}));
        args.push(format!("-vault-agent-token-file={TOKEN_MOUNT_PATH}{file}"));
    }
    let mut security_context = security_context(config, pod);
    if sidecar(ct) && ct.share_process_namespace {
        // Bank-Vaults' consul-template has no capabilities but this one, to signal the app.
        security_context.capabilities.add = vec!["SYS_PTRACE"];
    }
    json!({
        "name": CONTAINER,
        "image": ct.image,
        "imagePullPolicy": ct.pull_policy,
        "args": args,
        "env": env,
        "volumeMounts": mounts,
        "securityContext": security_context,
        "resources": {"limits": {"cpu": ct.cpu, "memory": ct.memory}},
    })
}

/// Runs beside the app (not `-once`).
pub fn sidecar(ct: &CtConfig) -> bool {
    !ct.once
}

/// The rendered files in an app container (and, with `vault-ct-inject-in-initcontainers`, in the
/// user's init containers).
pub fn app_mount(ct: &CtConfig) -> Value {
    json!({"name": SECRETS_VOLUME, "mountPath": ct.config_path})
}

/// The rendered files (memory) and the user's configuration.
pub fn volumes(ct: &CtConfig) -> Vec<Value> {
    vec![
        json!({"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory"}}),
        json!({"name": CONFIG_VOLUME, "configMap": {"name": ct.configmap, "defaultMode": 420, "items": [{"key": "config.hcl", "path": "config.hcl"}]}}),
    ]
}
