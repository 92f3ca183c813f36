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
vault_env::names! {
    /// Every key this webhook acts on (after the prefix), in either spelling's old form.
    ALL;
    MUTATE = "mutate",
    VAULT_ADDR = "vault-addr",
    VAULT_SKIP_VERIFY = "vault-skip-verify",
    VAULT_ROLE = "vault-role",
    VAULT_PATH = "vault-path",
    VAULT_AUTH_METHOD = "vault-auth-method",
    VAULT_NAMESPACE = "vault-namespace",
    VAULT_TLS_SECRET = "vault-tls-secret",
    VAULT_CLIENT_TIMEOUT = "vault-client-timeout",
    VAULT_IGNORE_MISSING_SECRETS = "vault-ignore-missing-secrets",
    TRANSIT_KEY_ID = "transit-key-id",
    TRANSIT_PATH = "transit-path",
    TRANSIT_BATCH_SIZE = "transit-batch-size",
    VAULT_ENV_PASSTHROUGH = "vault-env-passthrough",
    ENABLE_JSON_LOG = "enable-json-log",
    LOG_LEVEL = "log-level",
    TOKEN_AUTH_MOUNT = "token-auth-mount",
    VAULT_ENV_DAEMON = "vault-env-daemon",
    VAULT_ENV_DELAY = "vault-env-delay",
    VAULT_ENV_FROM_PATH = "vault-env-from-path",
    VAULT_ENV_IMAGE = "vault-env-image",
    VAULT_ENV_IMAGE_PULL_POLICY = "vault-env-image-pull-policy",
    MUTATE_PROBES = "mutate-probes",
    /// Ours (Bank-Vaults' PR #842): only these containers (comma-separated names) are wrapped.
    MUTATE_CONTAINERS = "mutate-containers",
    /// Ours (Bank-Vaults' issue #403): the `vault-env` volume's medium, `Memory` or `Disk`.
    VAULT_ENV_VOLUME_MEDIUM = "vault-env-volume-medium",
    RUN_AS_NON_ROOT = "run-as-non-root",
    RUN_AS_USER = "run-as-user",
    RUN_AS_GROUP = "run-as-group",
    READONLY_ROOT_FS = "readonly-root-fs",
    PSP_ALLOW_PRIVILEGE_ESCALATION = "psp-allow-privilege-escalation",
    REGISTRY_SKIP_VERIFY = "registry-skip-verify",
    VAULT_SERVICEACCOUNT = "vault-serviceaccount",
    // vault-agent with the user's configuration (annotations/agent.rs).
    VAULT_AGENT = "vault-agent",
    VAULT_AGENT_CONFIGMAP = "vault-agent-configmap",
    VAULT_AGENT_ONCE = "vault-agent-once",
    /// Ours: the sidecar agent as a native sidecar (an init container with `restartPolicy: Always`).
    VAULT_AGENT_NATIVE_SIDECAR = "vault-agent-native-sidecar",
    VAULT_AGENT_SHARE_PROCESS_NAMESPACE = "vault-agent-share-process-namespace",
    VAULT_AGENT_CPU = "vault-agent-cpu",
    VAULT_AGENT_CPU_LIMIT = "vault-agent-cpu-limit",
    VAULT_AGENT_CPU_REQUEST = "vault-agent-cpu-request",
    VAULT_AGENT_MEMORY = "vault-agent-memory",
    VAULT_AGENT_MEMORY_LIMIT = "vault-agent-memory-limit",
    VAULT_AGENT_MEMORY_REQUEST = "vault-agent-memory-request",
    VAULT_AGENT_ENV_VARIABLES = "vault-agent-env-variables",
    VAULT_CONFIGFILE_PATH = "vault-configfile-path",
    VAULT_IMAGE = "vault-image",
    VAULT_IMAGE_PULL_POLICY = "vault-image-pull-policy",
    SERVICE_ACCOUNT_TOKEN_VOLUME_NAME = "service-account-token-volume-name",
    // consul-template (annotations/consul_template.rs).
    VAULT_CT_CONFIGMAP = "vault-ct-configmap",
    VAULT_CT_IMAGE = "vault-ct-image",
    VAULT_CT_PULL_POLICY = "vault-ct-pull-policy",
    VAULT_CT_ONCE = "vault-ct-once",
    VAULT_CT_SHARE_PROCESS_NAMESPACE = "vault-ct-share-process-namespace",
    VAULT_CT_CPU = "vault-ct-cpu",
    VAULT_CT_MEMORY = "vault-ct-memory",
    VAULT_CT_SECRETS_MOUNT_PATH = "vault-ct-secrets-mount-path",
    VAULT_CT_INJECT_IN_INITCONTAINERS = "vault-ct-inject-in-initcontainers",
    /// Ours: the consul-template sidecar as a native sidecar.
    VAULT_CT_NATIVE_SIDECAR = "vault-ct-native-sidecar",
}

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
    /// Some key under the new prefix is a `bao-*` one (only then is that spelling looked up).
    any_bao: bool,
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
        let any_bao = new.keys().any(|k| k.starts_with("bao-"));
        Annotations { new, old, any_bao }
    }
}

impl Lookup for Annotations<'_> {
    /// Under the new prefix: the successor's renamed key, our key, then the successor's OpenBao
    /// spelling (`bao-addr` for `vault-addr`: its `bao` provider mirrors every `vault-*` key with
    /// the same meaning); then Bank-Vaults' prefix.
    fn find(&self, key: &str) -> Option<Found<'_>> {
        let renamed = RENAMED.iter().find(|(old, _)| *old == key).map(|(_, new)| *new).unwrap_or(&[]);
        let keys = || renamed.iter().copied().chain([key]);
        // Called for every known key of every pod: the `bao-` spelling is only built when some
        // annotation under the new prefix could be one.
        let bao = || {
            let mut candidates = keys().filter(|_| self.any_bao).filter_map(|k| k.strip_prefix("vault-"));
            candidates.find_map(|rest| self.new.get(format!("bao-{rest}").as_str()))
        };
        let (name, value) = keys().find_map(|k| self.new.get(k)).or_else(bao).or_else(|| self.old.get(key))?;
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
