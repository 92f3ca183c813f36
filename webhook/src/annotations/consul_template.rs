//! Bank-Vaults' consul-template annotations (`vault-ct-*`, their case B): consul-template renders
//! the templates of the user's ConfigMap into a memory volume that every app container mounts,
//! as a sidecar or, with `vault-ct-once`, as an init container. It reads the token that an agent
//! init container sinks.

use super::agent::{AgentDefaults, EXPECTED_QUANTITY, quantity};
use super::keys::*;
use super::values::{EXPECTED_PULL_POLICY, pull_policy};
use super::vault::AnnotationReader;
use vault_env::config::reader::{EXPECTED_BOOL, parse_bool};

#[derive(Debug, Clone, PartialEq)]
pub struct CtConfig {
    /// The user's ConfigMap with consul-template's `config.hcl`.
    pub configmap: String,
    pub image: String,
    pub pull_policy: String,
    /// `vault-ct-once`: render once (`-once`) in an init container, before the app starts.
    pub once: bool,
    /// `vault-ct-inject-in-initcontainers` (with `vault-ct-once`): the user's init containers
    /// mount the rendered files too.
    pub inject_in_init_containers: bool,
    /// `vault-ct-native-sidecar` (ours): the sidecar as an init container with `restartPolicy:
    /// Always`, after the login: it starts before the app and does not keep a Job from finishing.
    pub native_sidecar: bool,
    /// `vault-ct-share-process-namespace` (default true, for a sidecar: a template's `command`
    /// may signal the app).
    pub share_process_namespace: bool,
    /// Limits only, as in Bank-Vaults.
    pub cpu: String,
    pub memory: String,
    /// Where the rendered files are mounted (`vault-configfile-path`, else `vault-ct-secrets-mount-path`).
    pub config_path: String,
}

/// Its token comes from the pod's login agent (`PodConfig::login_agent`) or its own init agent.
pub fn read(r: &mut AnnotationReader<'_, '_>, d: &AgentDefaults, configmap: String, config_path: String) -> CtConfig {
    let once = r.parsed(VAULT_CT_ONCE, false, EXPECTED_BOOL, parse_bool);
    let in_init_containers = r.parsed(VAULT_CT_INJECT_IN_INITCONTAINERS, false, EXPECTED_BOOL, parse_bool);
    CtConfig {
        configmap,
        image: r.string(VAULT_CT_IMAGE, &d.ct_image),
        pull_policy: r.parsed(VAULT_CT_PULL_POLICY, d.ct_pull_policy.clone(), EXPECTED_PULL_POLICY, pull_policy),
        once,
        inject_in_init_containers: once && in_init_containers,
        native_sidecar: r.parsed(VAULT_CT_NATIVE_SIDECAR, false, EXPECTED_BOOL, parse_bool),
        share_process_namespace: r.parsed(VAULT_CT_SHARE_PROCESS_NAMESPACE, true, EXPECTED_BOOL, parse_bool),
        cpu: r.parsed(VAULT_CT_CPU, "100m".to_string(), EXPECTED_QUANTITY, quantity),
        memory: r.parsed(VAULT_CT_MEMORY, "128Mi".to_string(), EXPECTED_QUANTITY, quantity),
        config_path,
    }
}
