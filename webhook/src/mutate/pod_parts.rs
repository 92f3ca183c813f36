//! What the webhook adds to a pod: vault-env's variables (written with the core's constants, so a
//! rename breaks the build), the volume mounts, the `copy-vault-env` init container and its
//! security context.

use crate::annotations::PodConfig;
use crate::model::{Container, Pod, Probe};
use serde::Serialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::time::Duration;
use vault_env::config as names;

pub const VOLUME: &str = "vault-env";
pub const MOUNT_PATH: &str = "/vault/";
pub const BINARY: &str = "/vault/vault-env";
pub const COPY_CONTAINER: &str = "copy-vault-env";
/// Where the vault-env image keeps its binary; `vault-env --copy-to DIR` copies itself, no shell.
pub const IMAGE_BINARY: &str = "/usr/local/bin/vault-env";
pub const TOKEN_MOUNT_PATH: &str = "/vault-token/";
/// Where the pod's own init vault-agent sinks its token (in the `vault-env` volume): the path
/// Bank-Vaults documents for its users' agent configurations.
pub const AGENT_TOKEN_FILE: &str = "/vault/.vault-token";
/// The login agent's token (the configuration the webhook writes sinks it here): a memory volume
/// of its own, mounted read-only only where it is read (vault-env in case A, consul-template).
pub const LOGIN_TOKEN_VOLUME: &str = "vault-agent-token";
pub const LOGIN_TOKEN_DIR: &str = "/vault-agent-token/";
pub const LOGIN_TOKEN_FILE: &str = "/vault-agent-token/.vault-token";

/// Whether vault-env uses the login agent's token (Bank-Vaults' case A): not when the pod brings
/// its own token (`token-auth-mount`) or its own init agent (case D).
pub fn uses_login_token(config: &PodConfig) -> bool {
    config.token_auth_mount.is_none()
        && !config.agent.as_ref().is_some_and(|a| a.init)
        && config.login_agent.as_ref().is_some_and(|l| l.for_vault_env)
}

/// An `env` entry this webhook adds.
#[derive(Serialize)]
pub struct EnvEntry<'a> {
    name: &'static str,
    value: Cow<'a, str>,
}

fn env<'a>(name: &'static str, value: impl Into<Cow<'a, str>>) -> EnvEntry<'a> {
    EnvEntry { name, value: value.into() }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Where the CA of `vault-tls-secret` goes: `vault-tls` at `/vault/tls/`, or `vault-env-tls` at
/// `/vault-env/tls/` when the pod already has a `vault-tls` volume (Vault's own pods).
pub fn tls_volume(pod: &Pod) -> (&'static str, &'static str) {
    let taken = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|v| v.iter().any(|v| v.name == "vault-tls"));
    if taken { ("vault-env-tls", "/vault-env/tls/") } else { ("vault-tls", "/vault/tls/") }
}

/// The variables vault-env reads, in Bank-Vaults' order. `VAULT_LOG_LEVEL` is added unless
/// `c` sets it itself ([`sets_log_level`]).
pub fn vault_env_vars<'a>(sets_log_level: bool, config: &'a PodConfig, pod: &Pod) -> Vec<EnvEntry<'a>> {
    let mut out = vec![
        env(names::VAULT_ADDR, config.vault.addr.as_str()),
        env(names::VAULT_SKIP_VERIFY, bool_str(config.vault.skip_verify)),
        env(names::VAULT_AUTH_METHOD, config.vault.auth_method.as_str()),
        env(names::VAULT_PATH, config.vault.path.as_str()),
        env(names::VAULT_ROLE, config.vault.role.as_str()),
        env(names::VAULT_IGNORE_MISSING_SECRETS, bool_str(config.vault.ignore_missing_secrets)),
        env(names::VAULT_ENV_PASSTHROUGH, config.passthrough.as_str()),
        env(names::VAULT_JSON_LOG, bool_str(config.json_log)),
        env(names::VAULT_CLIENT_TIMEOUT, go_duration(config.vault.client_timeout)),
    ];
    if !sets_log_level && !config.log_level.is_empty() {
        out.push(env(names::VAULT_LOG_LEVEL, config.log_level.as_str()));
    }
    if !config.vault.transit_key_id.is_empty() {
        out.push(env(names::VAULT_TRANSIT_KEY_ID, config.vault.transit_key_id.as_str()));
    }
    if !config.vault.transit_path.is_empty() {
        out.push(env(names::VAULT_TRANSIT_PATH, config.vault.transit_path.as_str()));
    }
    if config.vault.transit_batch_size > 0 {
        out.push(env(names::VAULT_TRANSIT_BATCH_SIZE, config.vault.transit_batch_size.to_string()));
    }
    if !config.vault.namespace.is_empty() {
        out.push(env(names::VAULT_NAMESPACE, config.vault.namespace.as_str()));
    }
    if !config.vault.tls_secret.is_empty() {
        out.push(env(names::VAULT_CACERT, format!("{}ca.crt", tls_volume(pod).1)));
    }
    if let Some((_, file)) = &config.token_auth_mount {
        out.push(env(names::VAULT_TOKEN_FILE, format!("{TOKEN_MOUNT_PATH}{file}")));
    } else if config.agent.as_ref().is_some_and(|a| a.init) {
        // The pod's own init agent's token (its configuration sinks it there).
        out.push(env(names::VAULT_TOKEN_FILE, AGENT_TOKEN_FILE));
    } else if uses_login_token(config) {
        out.push(env(names::VAULT_TOKEN_FILE, LOGIN_TOKEN_FILE));
    }
    if let Some(daemon) = config.daemon {
        out.push(env(names::VAULT_ENV_DAEMON, bool_str(daemon)));
    }
    if let Some(delay) = config.delay {
        out.push(env(names::VAULT_ENV_DELAY, go_duration(delay)));
    }
    if !config.from_path.is_empty() {
        out.push(env(names::VAULT_ENV_FROM_PATH, config.from_path.as_str()));
    }
    out
}

/// Whether a container sets `VAULT_LOG_LEVEL` itself.
pub fn sets_log_level(c: &Container) -> bool {
    c.env.iter().flatten().any(|e| e.name == names::VAULT_LOG_LEVEL)
}

/// The `vault-env` volume, and the Vault CA when there is a TLS secret: what every container this
/// webhook touches mounts (Bank-Vaults' base mounts).
pub fn base_mounts(config: &PodConfig, pod: &Pod) -> Vec<Value> {
    let mut out = vec![json!({"name": VOLUME, "mountPath": MOUNT_PATH})];
    if !config.vault.tls_secret.is_empty() {
        let (name, path) = tls_volume(pod);
        out.push(json!({"name": name, "mountPath": path, "readOnly": true}));
    }
    out
}

/// A mutated container's mounts: the base ones, with `/vault/` read-only (only `copy-vault-env`
/// and the agents write there: an app must not replace the `vault-env` binary the other
/// containers run, nor the agent's token), the login agent's token (read-only) when vault-env
/// uses it, and the `token-auth-mount` volume.
pub fn mounts(config: &PodConfig, pod: &Pod) -> Vec<Value> {
    let mut out = base_mounts(config, pod);
    out[0]["readOnly"] = json!(true);
    if uses_login_token(config) {
        out.push(json!({"name": LOGIN_TOKEN_VOLUME, "mountPath": LOGIN_TOKEN_DIR, "readOnly": true}));
    }
    if let Some((volume, _)) = &config.token_auth_mount {
        out.push(json!({"name": volume, "mountPath": TOKEN_MOUNT_PATH, "readOnly": true}));
    }
    out
}

/// The security context of containers this webhook adds (Bank-Vaults' `getSecurityContext`), plus the
/// `RuntimeDefault` seccomp profile that restricted Pod Security requires.
pub fn security_context(config: &PodConfig, pod: &Pod) -> SecurityContext {
    let pod_user = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|s| s.run_as_user);
    SecurityContext {
        allow_privilege_escalation: config.allow_privilege_escalation,
        capabilities: Capabilities { add: Vec::new(), drop: ["ALL"] },
        read_only_root_filesystem: config.readonly_root_fs,
        run_as_group: (config.run_as_group > 0).then_some(config.run_as_group),
        run_as_non_root: config.run_as_non_root.then_some(true),
        run_as_user: if config.run_as_user > 0 { Some(config.run_as_user) } else { pod_user },
        seccomp_profile: SeccompProfile { kind: "RuntimeDefault" },
    }
}

/// The `securityContext` of the containers the webhook adds. Typed rather than a `Value` (no map
/// built and dropped per review); fields in the order of their names, as the `Value` wrote them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub allow_privilege_escalation: bool,
    pub capabilities: Capabilities,
    pub read_only_root_filesystem: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    pub seccomp_profile: SeccompProfile,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<&'static str>,
    pub drop: [&'static str; 1],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `requests` and `limits` of CPU and memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources<'a> {
    pub limits: CpuMemory<'a>,
    pub requests: CpuMemory<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuMemory<'a> {
    pub cpu: &'a str,
    pub memory: &'a str,
}

/// The `VAULT_ENV_CPU/MEMORY_*` resources: the copy container's, and the login agent's (as in
/// Bank-Vaults).
pub fn copy_resources(config: &PodConfig) -> Resources<'_> {
    let r = &config.resources;
    Resources {
        limits: CpuMemory { cpu: &r.cpu_limit, memory: &r.memory_limit },
        requests: CpuMemory { cpu: &r.cpu_request, memory: &r.memory_request },
    }
}

/// The init container that copies vault-env's binary into the shared volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyContainer<'a> {
    command: [&'static str; 3],
    image: &'a str,
    image_pull_policy: &'a str,
    name: &'static str,
    resources: Resources<'a>,
    security_context: SecurityContext,
    volume_mounts: [Mount; 1],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Mount {
    mount_path: &'static str,
    name: &'static str,
}

pub fn copy_container<'a>(config: &'a PodConfig, pod: &Pod) -> CopyContainer<'a> {
    CopyContainer {
        command: [IMAGE_BINARY, "--copy-to", MOUNT_PATH],
        image: &config.env_image,
        image_pull_policy: &config.env_pull_policy,
        name: COPY_CONTAINER,
        resources: copy_resources(config),
        security_context: security_context(config, pod),
        volume_mounts: [Mount { mount_path: MOUNT_PATH, name: VOLUME }],
    }
}

pub fn probe_command(probe: Option<&Probe>) -> Option<Vec<String>> {
    let command = probe?.exec.as_ref()?.command.as_ref()?;
    Some([BINARY].into_iter().chain(command.iter().map(|c| &**c)).map(str::to_string).collect())
}

/// Go's `time.Duration.String()`: `10s`, `1m30s`, `1h0m0s`, `500ms`, `0s` — how Bank-Vaults writes
/// `VAULT_CLIENT_TIMEOUT` into pods.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => ("µs", 1_000f64),
            _ => ("ms", 1_000_000f64),
        };
        return format!("{}{unit}", trim_float(nanos as f64 / div));
    }
    let secs = d.as_secs();
    let frac = d.subsec_nanos();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let sec = match frac {
        0 => format!("{s}s"),
        f => format!("{}s", trim_float(s as f64 + f as f64 / 1e9)),
    };
    match (h, m) {
        (0, 0) => sec,
        (0, m) => format!("{m}m{sec}"),
        (h, m) => format!("{h}h{m}m{sec}"),
    }
}

fn trim_float(f: f64) -> String {
    let s = format!("{f:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_nanos(42), "42ns"),
        ];
        for (d, s) in cases {
            assert_eq!(go_duration(d), s);
        }
    }
}
