//! A pod's settings: its annotations over the webhook's [`PodDefaults`].

use super::agent::{AgentConfig, AgentDefaults, AgentImage, DEFAULT_CONFIG_PATH, LoginAgent, read_agent};
use super::consul_template::{self, CtConfig};
use super::keys::*;
pub use super::values::{EXPECTED_PULL_POLICY, is_quantity, pull_policy};
use super::vault::{AnnotationReader, EXPECTED_KUBE_NAME, kube_name};
use super::vault::{ObjectInfo, VaultDefaults, VaultTarget, read_vault_target};
use super::vault_addr;
use std::collections::BTreeMap;
use std::time::Duration;
use vault_env::config::reader::{EXPECTED_BOOL, parse_bool, parse_duration};
use vault_env::config::reader::{FieldError, Reader};

/// Image whose `/usr/local/bin/vault-env` the `copy-vault-env` init container copies.
pub const DEFAULT_VAULT_ENV_IMAGE: &str = "ghcr.io/vault-env/vault-env:0.1.0";

/// The webhook's defaults for pods (its environment); `Default` is Bank-Vaults'.
#[derive(Debug, Clone, PartialEq)]
pub struct PodDefaults {
    pub vault: VaultDefaults,
    /// `None` when unset: vault-env then picks daemon mode by itself when a secret has a lease.
    pub env_daemon: Option<bool>,
    pub env_delay: Option<Duration>,
    pub env_passthrough: String,
    pub env_image: String,
    pub env_pull_policy: String,
    pub resources: Resources,
    pub allow_privilege_escalation: bool,
    pub run_as_non_root: bool,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub readonly_root_fs: bool,
    pub registry_skip_verify: bool,
    /// `VAULT_ALLOW_OBJECT_SKIP_VERIFY`: whether a pod's `vault-skip-verify` annotation counts.
    pub allow_skip_verify: bool,
    /// `VAULT_SERVICEACCOUNT`: the default of `vault-serviceaccount`, which a pod's `vault-role`
    /// template reads as `{{.serviceaccount}}`.
    pub service_account: String,
    /// `VAULT_ENV_VOLUME_MEDIUM`: `Memory` or `Disk`.
    pub volume_medium: String,
    /// Default `VAULT_LOG_LEVEL` for apps. Unlike Bank-Vaults, not the webhook's own `LOG_LEVEL`.
    pub app_log_level: String,
    pub json_log: bool,
    pub agent: AgentDefaults,
}

impl Default for PodDefaults {
    fn default() -> Self {
        PodDefaults {
            vault: VaultDefaults::default(),
            env_daemon: None,
            env_delay: None,
            env_passthrough: String::new(),
            env_image: DEFAULT_VAULT_ENV_IMAGE.into(),
            env_pull_policy: "IfNotPresent".into(),
            resources: Resources::default(),
            allow_privilege_escalation: false,
            run_as_non_root: false,
            run_as_user: 0,
            run_as_group: 0,
            readonly_root_fs: false,
            registry_skip_verify: false,
            allow_skip_verify: false,
            service_account: String::new(),
            volume_medium: "Memory".into(),
            app_log_level: "info".into(),
            json_log: false,
            agent: AgentDefaults::default(),
        }
    }
}

/// The `copy-vault-env` init container's requests and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

impl Default for Resources {
    fn default() -> Self {
        Resources { cpu_request: "100m".into(), memory_request: "256Mi".into(), cpu_limit: "500m".into(), memory_limit: "256Mi".into() }
    }
}

/// Everything the pod mutation needs to know, resolved once per pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodConfig {
    pub skip: bool,
    pub vault: VaultTarget,
    pub passthrough: String,
    pub json_log: bool,
    pub log_level: String,
    /// `token-auth-mount: "volume:file"`.
    pub token_auth_mount: Option<(String, String)>,
    /// `Some` only when set (annotation or webhook default); unset lets vault-env choose.
    pub daemon: Option<bool>,
    pub delay: Option<Duration>,
    pub from_path: String,
    pub env_image: String,
    pub env_pull_policy: String,
    pub resources: Resources,
    pub mutate_probes: bool,
    pub run_as_non_root: bool,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub readonly_root_fs: bool,
    pub allow_privilege_escalation: bool,
    pub registry_skip_verify: bool,
    /// A vault-agent with the pod's own configuration (`vault-agent-configmap`).
    pub agent: Option<AgentConfig>,
    /// consul-template with the pod's own configuration (`vault-ct-configmap`).
    pub consul_template: Option<CtConfig>,
    /// An init agent that only logs in and sinks its token, for consul-template or vault-env.
    pub login_agent: Option<LoginAgent>,
    /// Annotations read but not acted on, for the admission's warnings.
    pub warnings: Vec<String>,
    /// `mutate-containers`: only these containers are wrapped (empty: every one with references).
    pub containers: Vec<String>,
    /// `vault-env-volume-medium` / `VAULT_ENV_VOLUME_MEDIUM`: `Memory` (the default) or `Disk`.
    pub volume_medium: String,
}

pub const EXPECTED_MEDIUM: &str = "Memory or Disk";

/// Bank-Vaults' vault-env image (a common leftover in values files): it has no `--copy-to`.
pub fn is_bank_vaults_image(image: &str) -> bool {
    let name = image.split(['@', ':']).next().unwrap_or(image);
    ["bank-vaults/vault-env", "banzaicloud/vault-env"].iter().any(|n| name.ends_with(n))
}

/// The `vault-env` volume's medium: `Memory` (counted against the pod's memory; the binary is
/// about 3 MB) or `Disk` (the node's disk), in any case.
pub fn volume_medium(s: &str) -> Option<String> {
    ["Memory", "Disk"].into_iter().find(|m| m.eq_ignore_ascii_case(s)).map(String::from)
}

pub const EXPECTED_LOG_LEVEL: &str = "a log level (trace, debug, info, warn, error)";

impl PodConfig {
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
        object: &ObjectInfo<'_>,
        defaults: &PodDefaults,
    ) -> Result<PodConfig, Vec<FieldError>> {
        let source = Annotations::new(annotations);
        let mut r = Reader::new(&source);
        let skip = skipped(annotations, labels);
        let d = defaults;
        let addr = r.parsed(VAULT_ADDR, d.vault.addr.clone(), "an http:// or https:// address with a host", |s| {
            vault_addr::usable(s).is_ok().then(|| s.to_string())
        });
        let mut warnings = Vec::new();
        let mut skip_verify = r.bool(VAULT_SKIP_VERIFY, d.vault.skip_verify);
        if let Some(annotation) = r.name_of(VAULT_SKIP_VERIFY).filter(|_| !d.allow_skip_verify) {
            // Bank-Vaults v1.23.1 applies VAULT_ALLOW_OBJECT_SKIP_VERIFY to pods too.
            warnings.push(format!("{annotation}: ignored unless the webhook has VAULT_ALLOW_OBJECT_SKIP_VERIFY=true"));
            skip_verify = d.vault.skip_verify;
        }
        let default_role = match (d.vault.role.as_str(), object.service_account) {
            ("", "") => "default",
            ("", sa) => sa,
            (role, _) => role,
        };
        // `{{.serviceaccount}}` in a role is the vault-serviceaccount value, as in Bank-Vaults;
        // where that is unset (theirs then renders an empty name) the pod's ServiceAccount.
        let vault_sa = r.parsed(VAULT_SERVICEACCOUNT, d.service_account.clone(), EXPECTED_KUBE_NAME, kube_name);
        let role_info = ObjectInfo { service_account: if vault_sa.is_empty() { object.service_account } else { &vault_sa }, ..*object };
        let vault = read_vault_target(&mut r, &d.vault, addr, skip_verify, default_role, &role_info);
        let token_auth_mount = r.optional(TOKEN_AUTH_MOUNT, "VOLUME:FILE", |s| match s.split_once(':') {
            Some((v, f)) if !v.is_empty() && !f.is_empty() && !f.contains('/') => Some((v.to_string(), f.to_string())),
            _ => None,
        });
        let (agent, consul_template, login_agent) = read_agents(&mut r, &d.agent);
        let env_image = r.string(VAULT_ENV_IMAGE, &d.env_image);
        if is_bank_vaults_image(&env_image) {
            warnings.push(format!(
                "vault-env image {env_image:?} is Bank-Vaults' own: its copy-vault-env step (vault-env --copy-to /vault/) will fail; \
                 use ours (VAULT_ENV_IMAGE / vault-env-image, default {DEFAULT_VAULT_ENV_IMAGE})"
            ));
        }
        let config = PodConfig {
            skip,
            vault,
            passthrough: r.string(VAULT_ENV_PASSTHROUGH, &d.env_passthrough),
            json_log: r.bool(ENABLE_JSON_LOG, d.json_log),
            log_level: r.parsed(LOG_LEVEL, d.app_log_level.clone(), EXPECTED_LOG_LEVEL, log_level),
            token_auth_mount,
            daemon: r.parsed(VAULT_ENV_DAEMON, d.env_daemon, EXPECTED_BOOL, |s| parse_bool(s).map(Some)),
            delay: r.parsed(VAULT_ENV_DELAY, d.env_delay, "a duration such as 10s", |s| parse_duration(s).map(Some)),
            from_path: r.string(VAULT_ENV_FROM_PATH, ""),
            env_image,
            env_pull_policy: r.parsed(VAULT_ENV_IMAGE_PULL_POLICY, d.env_pull_policy.clone(), EXPECTED_PULL_POLICY, pull_policy),
            resources: d.resources.clone(),
            mutate_probes: r.bool(MUTATE_PROBES, false),
            run_as_non_root: r.bool(RUN_AS_NON_ROOT, d.run_as_non_root),
            run_as_user: r.int(RUN_AS_USER, d.run_as_user),
            run_as_group: r.int(RUN_AS_GROUP, d.run_as_group),
            readonly_root_fs: r.bool(READONLY_ROOT_FS, d.readonly_root_fs),
            allow_privilege_escalation: r.bool(PSP_ALLOW_PRIVILEGE_ESCALATION, d.allow_privilege_escalation),
            registry_skip_verify: r.bool(REGISTRY_SKIP_VERIFY, d.registry_skip_verify),
            agent,
            consul_template,
            login_agent,
            warnings,
            containers: r
                .text(MUTATE_CONTAINERS)
                .map(|list| list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect())
                .unwrap_or_default(),
            volume_medium: r.parsed(VAULT_ENV_VOLUME_MEDIUM, d.volume_medium.clone(), EXPECTED_MEDIUM, volume_medium),
        };
        r.finish(config)
    }
}

/// The pod's vault-agent with its own configuration, its consul-template, and the agent that only
/// logs in (Bank-Vaults' generated configuration) for consul-template and, with `vault-agent:
/// "true"` and no `vault-agent-configmap`, for vault-env (their case A).
pub fn read_agents(r: &mut AnnotationReader<'_, '_>, d: &AgentDefaults) -> (Option<AgentConfig>, Option<CtConfig>, Option<LoginAgent>) {
    let agent_configmap = r.parsed(VAULT_AGENT_CONFIGMAP, String::new(), EXPECTED_KUBE_NAME, kube_name);
    let ct_configmap = r.parsed(VAULT_CT_CONFIGMAP, String::new(), EXPECTED_KUBE_NAME, kube_name);
    let use_agent = r.parsed(VAULT_AGENT, d.init, EXPECTED_BOOL, parse_bool);
    if agent_configmap.is_empty() && ct_configmap.is_empty() && !use_agent {
        return (None, None, None);
    }
    let image = AgentImage {
        image: r.string(VAULT_IMAGE, &d.image),
        pull_policy: r.parsed(VAULT_IMAGE_PULL_POLICY, d.pull_policy.clone(), EXPECTED_PULL_POLICY, pull_policy),
        sa_mount_path: r.string(SERVICE_ACCOUNT_TOKEN_VOLUME_NAME, &d.sa_mount_path),
    };
    let config_path = read_config_path(r);
    let agent = (!agent_configmap.is_empty()).then_some(agent_configmap).map(|cm| read_agent(r, cm, use_agent, &image, &config_path));
    let ct = (!ct_configmap.is_empty()).then_some(ct_configmap).map(|cm| consul_template::read(r, d, cm, config_path));
    let for_vault_env = use_agent && agent.is_none();
    let login = (agent.as_ref().is_none_or(|a| !a.init) && (ct.is_some() || for_vault_env)).then_some(LoginAgent { image, for_vault_env });
    (agent, ct, login)
}

/// `vault-configfile-path`, else `vault-ct-secrets-mount-path`, else [`DEFAULT_CONFIG_PATH`]: where
/// an agent's or consul-template's rendered files are mounted.
fn read_config_path(r: &mut AnnotationReader<'_, '_>) -> String {
    let fallback_path = r.string(VAULT_CT_SECRETS_MOUNT_PATH, DEFAULT_CONFIG_PATH);
    let config_path = r.string(VAULT_CONFIGFILE_PATH, &fallback_path);
    if !config_path.starts_with('/') {
        let name = r.name_of(VAULT_CONFIGFILE_PATH).or_else(|| r.name_of(VAULT_CT_SECRETS_MOUNT_PATH)).unwrap_or_default();
        r.push(FieldError::invalid(name, &config_path, "an absolute path"));
    }
    config_path
}

/// A level vault-env accepts, as written.
pub fn log_level(s: &str) -> Option<String> {
    matches!(s.to_ascii_lowercase().as_str(), "trace" | "debug" | "info" | "warn" | "warning" | "error").then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<PodConfig, Vec<FieldError>> {
        let annotations = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let info = ObjectInfo { name: "web-1", namespace: "shop", service_account: "web" };
        PodConfig::from_annotations(&annotations, &BTreeMap::new(), &info, &PodDefaults::default())
    }

    /// Bank-Vaults v1.23.1 applies VAULT_ALLOW_OBJECT_SKIP_VERIFY to pods too: the annotation is
    /// ignored (with a warning) unless the webhook allows it; a bad value is still an error.
    #[test]
    fn a_pods_skip_verify_counts_only_when_allowed() {
        let key = format!("{PREFIX}vault-skip-verify");
        let c = config(&[(&key, "true")]).unwrap();
        assert!(!c.vault.skip_verify);
        assert_eq!(c.warnings, [format!("annotation {key}: ignored unless the webhook has VAULT_ALLOW_OBJECT_SKIP_VERIFY=true")]);
        let annotations = [(key.clone(), "true".to_string())].into();
        let info = ObjectInfo { name: "web-1", namespace: "shop", service_account: "web" };
        let allowed = PodDefaults { allow_skip_verify: true, ..PodDefaults::default() };
        let c = PodConfig::from_annotations(&annotations, &BTreeMap::new(), &info, &allowed).unwrap();
        assert!(c.vault.skip_verify && c.warnings.is_empty());
        assert!(config(&[(&key, "yes")]).is_err());
    }

    /// The successor's OpenBao keys (`bao-*` under its prefix) mean the `vault-*` ones; ours win.
    #[test]
    fn bao_keys_are_vault_keys() {
        let new = "secrets-webhook.security.bank-vaults.io/";
        let c = config(&[
            (&format!("{new}bao-addr"), "https://bao:8200"),
            (&format!("{new}bao-role"), "app"),
            (&format!("{new}bao-transit-key-id"), "k"),
        ])
        .unwrap();
        assert_eq!((c.vault.addr.as_str(), c.vault.role.as_str(), c.vault.transit_key_id.as_str()), ("https://bao:8200", "app", "k"));
        let c = config(&[(&format!("{new}bao-addr"), "https://bao:8200"), (&format!("{new}vault-addr"), "https://vault:8200")]).unwrap();
        assert_eq!(c.vault.addr, "https://vault:8200");
    }

    /// Bank-Vaults renders `{{.serviceaccount}}` in a role as the `vault-serviceaccount` value.
    #[test]
    fn role_templates_read_the_vault_serviceaccount_value() {
        let role = format!("{PREFIX}vault-role");
        let c = config(&[(&role, "{{.serviceaccount}}-{{.namespace}}"), (&format!("{PREFIX}vault-serviceaccount"), "reader")]).unwrap();
        assert_eq!(c.vault.role, "reader-shop");
        // Unset: the pod's ServiceAccount (theirs renders an empty name, a role no Vault has).
        assert_eq!(config(&[(&role, "{{.serviceaccount}}-{{.namespace}}")]).unwrap().vault.role, "web-shop");
    }

    /// Bank-Vaults' vault-env image left in a values file passes admission and fails at the copy
    /// step: the admission warns.
    #[test]
    fn bank_vaults_vault_env_image_is_warned_about() {
        let c = config(&[(&format!("{PREFIX}vault-env-image"), "ghcr.io/bank-vaults/vault-env:v1.23.0")]).unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("is Bank-Vaults' own")), "{:?}", c.warnings);
        assert!(config(&[]).unwrap().warnings.is_empty());
        assert!(is_bank_vaults_image("banzaicloud/vault-env:1.13.0") && !is_bank_vaults_image("ghcr.io/vault-env/vault-env:0.1.0"));
    }

    /// Bank-Vaults' getPullPolicy takes lower-case names; the pod gets the API server's spelling.
    #[test]
    fn pull_policies_in_any_case() {
        let c = config(&[(&format!("{PREFIX}vault-env-image-pull-policy"), "always")]).unwrap();
        assert_eq!(c.env_pull_policy, "Always");
        assert!(config(&[(&format!("{PREFIX}vault-env-image-pull-policy"), "sometimes")]).is_err());
    }

    /// consul-template's keys under either prefix, and which login agent comes: for
    /// consul-template, for vault-env too with `vault-agent: "true"` (case A), none when the
    /// pod's own init agent logs in.
    #[test]
    fn the_consul_template_annotations_and_the_login_agent() {
        let c = config(&[
            ("vault.security.banzaicloud.io/vault-ct-configmap", "ct-config"),
            ("secrets-webhook.security.bank-vaults.io/vault-ct-once", "true"),
            ("vault.security.banzaicloud.io/vault-ct-inject-in-initcontainers", "true"),
            ("vault.security.banzaicloud.io/vault-ct-cpu", "50m"),
            ("vault.security.banzaicloud.io/vault-ct-secrets-mount-path", "/etc/app"),
            ("vault.security.banzaicloud.io/service-account-token-volume-name", "/var/run/secrets/vault"),
        ])
        .unwrap();
        let ct = c.consul_template.expect("consul-template");
        assert_eq!((ct.configmap.as_str(), ct.once, ct.inject_in_init_containers), ("ct-config", true, true));
        assert_eq!((ct.cpu.as_str(), ct.memory.as_str(), ct.config_path.as_str()), ("50m", "128Mi", "/etc/app"));
        assert_eq!(ct.image, "hashicorp/consul-template:0.41.1");
        let login = c.login_agent.expect("a login agent for consul-template");
        assert_eq!((login.for_vault_env, login.image.sa_mount_path.as_str()), (false, "/var/run/secrets/vault"));

        let c = config(&[("vault.security.banzaicloud.io/vault-agent", "true")]).unwrap();
        assert_eq!(c.login_agent.map(|l| l.for_vault_env), Some(true), "case A");
        assert_eq!(config(&[]).unwrap().login_agent, None);
        let c = config(&[
            ("vault.security.banzaicloud.io/vault-agent", "true"),
            ("vault.security.banzaicloud.io/vault-agent-configmap", "agent-config"),
            ("vault.security.banzaicloud.io/vault-ct-configmap", "ct-config"),
        ])
        .unwrap();
        assert_eq!((c.agent.map(|a| a.init), c.consul_template.is_some(), c.login_agent), (Some(true), true, None));
        let errors = config(&[("vault.security.banzaicloud.io/vault-ct-configmap", "ct"), ("vault.security.banzaicloud.io/vault-ct-once", "sure")])
            .unwrap_err();
        assert!(errors.iter().any(|e| e.to_string().contains("vault-ct-once")), "{errors:?}");
    }

    #[test]
    fn the_agent_annotations_under_either_prefix() {
        assert_eq!(config(&[]).unwrap().agent, None, "no vault-agent-configmap, no agent");
        let a = config(&[
            ("vault.security.banzaicloud.io/vault-agent-configmap", "agent-config"),
            ("secrets-webhook.security.bank-vaults.io/vault-agent", "true"),
            ("vault.security.banzaicloud.io/vault-agent-cpu", "250m"),
            ("vault.security.banzaicloud.io/vault-agent-memory-request", "64Mi"),
            ("vault.security.banzaicloud.io/vault-agent-env-variables", r#"[{"Name": "SKIP_SETCAP", "Value": "1"}]"#),
            ("vault.security.banzaicloud.io/vault-ct-secrets-mount-path", "/etc/secrets"),
            ("vault.security.banzaicloud.io/vault-image", "openbao/openbao:2.4.1"),
        ])
        .unwrap()
        .agent
        .unwrap();
        assert_eq!((a.configmap.as_str(), a.init, a.share_process_namespace), ("agent-config", true, true));
        assert_eq!((a.limits.cpu.as_str(), a.limits.memory.as_str(), a.requests.memory.as_str()), ("250m", "128Mi", "64Mi"));
        assert_eq!(a.env, [("SKIP_SETCAP".to_string(), "1".to_string())]);
        assert_eq!((a.config_path.as_str(), a.image.as_str()), ("/etc/secrets", "openbao/openbao:2.4.1"));
        let errors = config(&[
            ("vault.security.banzaicloud.io/vault-agent-configmap", "agent-config"),
            ("vault.security.banzaicloud.io/vault-agent-env-variables", "[not json"),
            ("vault.security.banzaicloud.io/vault-agent-cpu", "lots"),
            ("vault.security.banzaicloud.io/vault-configfile-path", "relative/path"),
        ])
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text.iter().any(|e| e.contains("vault-agent-env-variables") && e.contains("a JSON list")), "{text:?}");
        assert!(text.iter().any(|e| e.contains("vault-configfile-path=\"relative/path\"")), "{text:?}");
    }

    #[test]
    fn defaults_and_role_from_service_account() {
        let c = config(&[]).unwrap();
        assert_eq!(c.vault.addr, "https://vault:8200");
        assert_eq!(c.vault.role, "web");
        assert_eq!(c.vault.path, "kubernetes");
        assert_eq!(c.vault.transit_batch_size, 25);
        assert_eq!(c.log_level, "info");
        assert!(c.daemon.is_none() && !c.skip);
    }

    #[test]
    fn old_and_new_prefixes_new_wins() {
        let c = config(&[
            ("vault.security.banzaicloud.io/vault-env-daemon", "true"),
            ("vault.security.banzaicloud.io/vault-role", "old"),
            ("secrets-webhook.security.bank-vaults.io/vault-role", "new"),
            ("secrets-webhook.security.bank-vaults.io/vault-transit-key-id", "k1"),
            ("vault.security.banzaicloud.io/unknown-key", "whatever"),
        ])
        .unwrap();
        assert_eq!(c.daemon, Some(true));
        assert_eq!(c.vault.role, "new");
        assert_eq!(c.vault.transit_key_id, "k1");
    }

    #[test]
    fn bad_values_are_all_named() {
        let errors = config(&[
            ("vault.security.banzaicloud.io/vault-env-daemon", "yes please"),
            ("vault.security.banzaicloud.io/vault-client-timeout", "soon"),
            ("vault.security.banzaicloud.io/run-as-user", "root"),
            ("vault.security.banzaicloud.io/vault-addr", "vault:8200"),
            ("vault.security.banzaicloud.io/token-auth-mount", "novolume"),
        ])
        .unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        for key in ["vault-env-daemon", "vault-client-timeout", "run-as-user", "vault-addr", "token-auth-mount"] {
            assert!(names.contains(&format!("annotation {PREFIX}{key}").as_str()), "{key} not in {names:?}");
        }
        assert!(errors[0].to_string().starts_with("annotation vault.security.banzaicloud.io/"));
    }

    #[test]
    fn role_templates() {
        let c = config(&[("vault.security.banzaicloud.io/vault-role", "{{.namespace}}-{{.serviceaccount}}")]).unwrap();
        assert_eq!(c.vault.role, "shop-web");
    }

    #[test]
    fn skip_by_annotation_or_label() {
        assert!(config(&[("vault.security.banzaicloud.io/mutate", "skip")]).unwrap().skip);
        let labels = [(MUTATE_LABEL.to_string(), "skip".to_string())].into();
        let info = ObjectInfo { name: "p", namespace: "n", service_account: "" };
        let c = PodConfig::from_annotations(&BTreeMap::new(), &labels, &info, &PodDefaults::default()).unwrap();
        assert!(c.skip);
        assert_eq!(c.vault.role, "default");
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "256Mi", "1", "0.5", "1e3", "2Gi", "1.5G", "+1"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "lots", "1x", "Mi", "1..2", "1e", "--1", "1 Mi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
