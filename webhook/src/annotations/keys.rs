//! Annotation names, declared once, and an object's annotations as a [`Lookup`] for the core's
//! reader (the newer prefix wins over Bank-Vaults' original one).

use std::borrow::Cow;
use std::collections::BTreeMap;
use vault_env::config::reader::{Found, Lookup};

pub const PREFIX: &str = "vault.security.banzaicloud.io/";
pub const NEW_PREFIX: &str = "secrets-webhook.security.bank-vaults.io/";
/// The label (and annotation) value that opts an object out of mutation.
pub const MUTATE_LABEL: &str = "security.banzaicloud.io/mutate";

// Annotation keys (after the prefix), each declared once.
pub const MUTATE: &str = "mutate";
pub const VAULT_ADDR: &str = "vault-addr";
pub const VAULT_SKIP_VERIFY: &str = "vault-skip-verify";
pub const VAULT_ROLE: &str = "vault-role";
pub const VAULT_PATH: &str = "vault-path";
pub const VAULT_AUTH_METHOD: &str = "vault-auth-method";
pub const VAULT_NAMESPACE: &str = "vault-namespace";
pub const VAULT_TLS_SECRET: &str = "vault-tls-secret";
pub const VAULT_CLIENT_TIMEOUT: &str = "vault-client-timeout";
pub const VAULT_IGNORE_MISSING_SECRETS: &str = "vault-ignore-missing-secrets";
pub const TRANSIT_KEY_ID: &str = "transit-key-id";
pub const TRANSIT_PATH: &str = "transit-path";
pub const TRANSIT_BATCH_SIZE: &str = "transit-batch-size";
pub const VAULT_ENV_PASSTHROUGH: &str = "vault-env-passthrough";
pub const ENABLE_JSON_LOG: &str = "enable-json-log";
pub const LOG_LEVEL: &str = "log-level";
pub const TOKEN_AUTH_MOUNT: &str = "token-auth-mount";
pub const VAULT_ENV_DAEMON: &str = "vault-env-daemon";
pub const VAULT_ENV_DELAY: &str = "vault-env-delay";
pub const VAULT_ENV_FROM_PATH: &str = "vault-env-from-path";
pub const VAULT_ENV_IMAGE: &str = "vault-env-image";
pub const VAULT_ENV_IMAGE_PULL_POLICY: &str = "vault-env-image-pull-policy";
pub const MUTATE_PROBES: &str = "mutate-probes";
/// Ours (Bank-Vaults' PR #842): only these containers (comma-separated names) are wrapped.
pub const MUTATE_CONTAINERS: &str = "mutate-containers";
/// Ours (Bank-Vaults' issue #403): the `vault-env` volume's medium, `Memory` or `Disk`.
pub const VAULT_ENV_VOLUME_MEDIUM: &str = "vault-env-volume-medium";
pub const RUN_AS_NON_ROOT: &str = "run-as-non-root";
pub const RUN_AS_USER: &str = "run-as-user";
pub const RUN_AS_GROUP: &str = "run-as-group";
pub const READONLY_ROOT_FS: &str = "readonly-root-fs";
pub const PSP_ALLOW_PRIVILEGE_ESCALATION: &str = "psp-allow-privilege-escalation";
pub const REGISTRY_SKIP_VERIFY: &str = "registry-skip-verify";
pub const VAULT_SERVICEACCOUNT: &str = "vault-serviceaccount";
// vault-agent with the user's configuration (annotations/agent.rs).
pub const VAULT_AGENT: &str = "vault-agent";
pub const VAULT_AGENT_CONFIGMAP: &str = "vault-agent-configmap";
pub const VAULT_AGENT_ONCE: &str = "vault-agent-once";
/// Ours: the sidecar agent as a native sidecar (an init container with `restartPolicy: Always`).
pub const VAULT_AGENT_NATIVE_SIDECAR: &str = "vault-agent-native-sidecar";
pub const VAULT_AGENT_SHARE_PROCESS_NAMESPACE: &str = "vault-agent-share-process-namespace";
pub const VAULT_AGENT_CPU: &str = "vault-agent-cpu";
pub const VAULT_AGENT_CPU_LIMIT: &str = "vault-agent-cpu-limit";
pub const VAULT_AGENT_CPU_REQUEST: &str = "vault-agent-cpu-request";
pub const VAULT_AGENT_MEMORY: &str = "vault-agent-memory";
pub const VAULT_AGENT_MEMORY_LIMIT: &str = "vault-agent-memory-limit";
pub const VAULT_AGENT_MEMORY_REQUEST: &str = "vault-agent-memory-request";
pub const VAULT_AGENT_ENV_VARIABLES: &str = "vault-agent-env-variables";
pub const VAULT_CONFIGFILE_PATH: &str = "vault-configfile-path";
pub const VAULT_IMAGE: &str = "vault-image";
pub const VAULT_IMAGE_PULL_POLICY: &str = "vault-image-pull-policy";
pub const SERVICE_ACCOUNT_TOKEN_VOLUME_NAME: &str = "service-account-token-volume-name";
// consul-template (annotations/consul_template.rs).
pub const VAULT_CT_CONFIGMAP: &str = "vault-ct-configmap";
pub const VAULT_CT_IMAGE: &str = "vault-ct-image";
pub const VAULT_CT_PULL_POLICY: &str = "vault-ct-pull-policy";
pub const VAULT_CT_ONCE: &str = "vault-ct-once";
pub const VAULT_CT_SHARE_PROCESS_NAMESPACE: &str = "vault-ct-share-process-namespace";
pub const VAULT_CT_CPU: &str = "vault-ct-cpu";
pub const VAULT_CT_MEMORY: &str = "vault-ct-memory";
pub const VAULT_CT_SECRETS_MOUNT_PATH: &str = "vault-ct-secrets-mount-path";
pub const VAULT_CT_INJECT_IN_INITCONTAINERS: &str = "vault-ct-inject-in-initcontainers";
/// Ours: the consul-template sidecar as a native sidecar.
pub const VAULT_CT_NATIVE_SIDECAR: &str = "vault-ct-native-sidecar";

/// Every key this webhook acts on (after the prefix), in either spelling's old form.
pub const ALL: &[&str] = &[
    MUTATE,
    VAULT_ADDR,
    VAULT_SKIP_VERIFY,
    VAULT_ROLE,
    VAULT_PATH,
    VAULT_AUTH_METHOD,
    VAULT_NAMESPACE,
    VAULT_TLS_SECRET,
    VAULT_CLIENT_TIMEOUT,
    VAULT_IGNORE_MISSING_SECRETS,
    TRANSIT_KEY_ID,
    TRANSIT_PATH,
    TRANSIT_BATCH_SIZE,
    VAULT_ENV_PASSTHROUGH,
    ENABLE_JSON_LOG,
    LOG_LEVEL,
    TOKEN_AUTH_MOUNT,
    VAULT_ENV_DAEMON,
    VAULT_ENV_DELAY,
    VAULT_ENV_FROM_PATH,
    VAULT_ENV_IMAGE,
    VAULT_ENV_IMAGE_PULL_POLICY,
    MUTATE_PROBES,
    MUTATE_CONTAINERS,
    VAULT_ENV_VOLUME_MEDIUM,
    RUN_AS_NON_ROOT,
    RUN_AS_USER,
    RUN_AS_GROUP,
    READONLY_ROOT_FS,
    PSP_ALLOW_PRIVILEGE_ESCALATION,
    REGISTRY_SKIP_VERIFY,
    VAULT_SERVICEACCOUNT,
    VAULT_AGENT,
    VAULT_AGENT_CONFIGMAP,
    VAULT_AGENT_ONCE,
    VAULT_AGENT_NATIVE_SIDECAR,
    VAULT_AGENT_SHARE_PROCESS_NAMESPACE,
    VAULT_AGENT_CPU,
    VAULT_AGENT_CPU_LIMIT,
    VAULT_AGENT_CPU_REQUEST,
    VAULT_AGENT_MEMORY,
    VAULT_AGENT_MEMORY_LIMIT,
    VAULT_AGENT_MEMORY_REQUEST,
    VAULT_AGENT_ENV_VARIABLES,
    VAULT_CONFIGFILE_PATH,
    VAULT_IMAGE,
    VAULT_IMAGE_PULL_POLICY,
    SERVICE_ACCOUNT_TOKEN_VOLUME_NAME,
    VAULT_CT_CONFIGMAP,
    VAULT_CT_IMAGE,
    VAULT_CT_PULL_POLICY,
    VAULT_CT_ONCE,
    VAULT_CT_SHARE_PROCESS_NAMESPACE,
    VAULT_CT_CPU,
    VAULT_CT_MEMORY,
    VAULT_CT_SECRETS_MOUNT_PATH,
    VAULT_CT_INJECT_IN_INITCONTAINERS,
    VAULT_CT_NATIVE_SIDECAR,
];

/// A key under the new prefix in its old (Bank-Vaults) spelling: `vault-transit-key-id` →
/// `transit-key-id`; other keys as they are.
pub fn renamed(key: &str) -> &str {
    RENAMED.iter().find(|(_, new)| new.contains(&key)).map_or(key, |(old, _)| old)
}

/// Keys renamed under the new prefix by bank-vaults/secrets-webhook (`secrets-webhook` `pkg/common/annotations.go`): old key → new keys.
const RENAMED: &[(&str, &[&str])] = &[
    ("transit-key-id", &["vault-transit-key-id"]),
    ("transit-path", &["vault-transit-path"]),
    ("transit-batch-size", &["vault-transit-batch-size"]),
    ("token-auth-mount", &["vault-token-auth-mount"]),
    ("log-level", &["vault-log-level"]),
    ("vault-env-passthrough", &["vault-passthrough"]),
    ("vault-env-from-path", &["vault-from-path"]),
    ("vault-env-daemon", &["secret-init-daemon"]),
    ("vault-env-delay", &["secret-init-delay"]),
    ("enable-json-log", &["secret-init-json-log"]),
    ("vault-env-image", &["secret-init-image"]),
    ("vault-env-image-pull-policy", &["secret-init-image-pull-policy"]),
    ("service-account-token-volume-name", &["vault-service-account-token-volume-name"]),
];

/// (full annotation name, value) by the key after the prefix.
type Keyed<'a> = BTreeMap<&'a str, (&'a String, &'a str)>;

/// An object's annotations as a [`Lookup`]: our keys under the newer prefix win over Bank-Vaults'
/// original one; values are trimmed; errors name the full annotation.
pub struct Annotations<'a> {
    new: Keyed<'a>,
    old: Keyed<'a>,
}

impl<'a> Annotations<'a> {
    pub fn new(annotations: &'a BTreeMap<String, String>) -> Annotations<'a> {
        let (mut new, mut old) = (Keyed::new(), Keyed::new());
        for (name, value) in annotations {
            if let Some(key) = name.strip_prefix(NEW_PREFIX) {
                new.insert(key, (name, value.as_str()));
            } else if let Some(key) = name.strip_prefix(PREFIX) {
                old.insert(key, (name, value.as_str()));
            }
        }
        Annotations { new, old }
    }
}

impl Lookup for Annotations<'_> {
    /// Under the new prefix: the successor's renamed key, our key, then the successor's OpenBao
    /// spelling (`bao-addr` for `vault-addr`: its `bao` provider mirrors every `vault-*` key with
    /// the same meaning); then Bank-Vaults' prefix.
    fn find(&self, key: &str) -> Option<Found<'_>> {
        let renamed = RENAMED.iter().find(|(old, _)| *old == key).map(|(_, new)| *new).unwrap_or(&[]);
        let keys: Vec<&str> = renamed.iter().copied().chain([key]).collect();
        let bao: Vec<String> = keys.iter().filter_map(|k| k.strip_prefix("vault-")).map(|rest| format!("bao-{rest}")).collect();
        let (name, value) =
            keys.iter().find_map(|k| self.new.get(k)).or_else(|| bao.iter().find_map(|k| self.new.get(k.as_str()))).or_else(|| self.old.get(key))?;
        Some(Found { name: Cow::Owned(format!("annotation {name}")), text: Some(value.trim()) })
    }
}

/// The `vault-*` key a successor's `bao-*` key stands for (`bao-addr` → `vault-addr`).
pub fn bao_alias(key: &str) -> Option<String> {
    key.strip_prefix("bao-").map(|rest| format!("vault-{rest}"))
}

/// Opted out with the `mutate: skip` annotation or the `security.banzaicloud.io/mutate: skip` label.
pub fn skipped(annotations: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    Annotations::new(annotations).find(MUTATE).is_some_and(|f| f.text == Some("skip")) || labels.get(MUTATE_LABEL).is_some_and(|v| v == "skip")
}
