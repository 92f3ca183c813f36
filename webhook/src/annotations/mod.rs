//! Per-object settings from `vault.security.banzaicloud.io/*` annotations (and the same keys under
//! the newer `secrets-webhook.security.bank-vaults.io/` prefix), falling back to the webhook's
//! [`Settings`]. Unknown keys are ignored; a bad value is an error naming the annotation.

pub mod vault_addr;

use crate::settings::{Resources, Settings, pull_policy};
use std::collections::BTreeMap;
use std::time::Duration;
use vault_env::config::{parse_bool, parse_duration};

pub const PREFIX: &str = "vault.security.banzaicloud.io/";
pub const NEW_PREFIX: &str = "secrets-webhook.security.bank-vaults.io/";
/// The label (and annotation) value that opts an object out of mutation.
pub const MUTATE_LABEL: &str = "security.banzaicloud.io/mutate";

/// Keys renamed under the new prefix by bank-vaults/secrets-webhook (spec §5.13): old key → new keys.
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

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("annotation {annotation}: {value:?} is not {expected}")]
pub struct AnnotationError {
    pub annotation: String,
    pub value: String,
    pub expected: String,
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
}

/// Which Vault, as whom, and how: the settings pods and the webhook's own reads share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultTarget {
    pub addr: String,
    pub skip_verify: bool,
    pub auth_method: String,
    pub path: String,
    pub role: String,
    pub namespace: String,
    pub tls_secret: String,
    pub client_timeout: Duration,
    pub ignore_missing_secrets: bool,
    pub transit_key_id: String,
    pub transit_path: String,
    pub transit_batch_size: u32,
}

/// Who the object is, for the `vault-role` template.
pub struct ObjectInfo<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
}

/// (full annotation name, value) by the key after the prefix.
type Keyed<'a> = BTreeMap<&'a str, (&'a String, &'a str)>;

struct Reader<'a> {
    /// Our annotations under the newer prefix, and under Bank-Vaults' original one.
    new: Keyed<'a>,
    old: Keyed<'a>,
    errors: Vec<AnnotationError>,
}

impl<'a> Reader<'a> {
    fn new(annotations: &'a BTreeMap<String, String>) -> Reader<'a> {
        let (mut new, mut old) = (Keyed::new(), Keyed::new());
        for (name, value) in annotations {
            if let Some(key) = name.strip_prefix(NEW_PREFIX) {
                new.insert(key, (name, value.as_str()));
            } else if let Some(key) = name.strip_prefix(PREFIX) {
                old.insert(key, (name, value.as_str()));
            }
        }
        Reader { new, old, errors: Vec::new() }
    }

    /// The value and the full annotation name it came from; the new prefix wins over the old one.
    fn get(&self, key: &str) -> Option<(String, &'a str)> {
        let renamed = RENAMED.iter().find(|(old, _)| *old == key).map(|(_, new)| *new).unwrap_or(&[]);
        let found = renamed.iter().chain([&key]).find_map(|k| self.new.get(k)).or_else(|| self.old.get(key));
        found.map(|(name, value)| (name.to_string(), *value))
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.get(key).map(|(_, v)| v.trim().to_string()).unwrap_or_else(|| default.to_string())
    }

    fn parsed<T>(&mut self, key: &str, default: T, expected: &str, parse: impl Fn(&str) -> Option<T>) -> T {
        match self.get(key) {
            None => default,
            Some((name, value)) => match parse(value.trim()) {
                Some(v) => v,
                None => {
                    self.errors.push(AnnotationError { annotation: name, value: value.into(), expected: expected.into() });
                    default
                }
            },
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        self.parsed(key, default, "a boolean (true or false)", parse_bool)
    }

    fn int<T: std::str::FromStr>(&mut self, key: &str, default: T) -> T {
        self.parsed(key, default, "a whole number", |s| s.parse().ok())
    }

    /// The [`VaultTarget`] annotations, given the address and skip-verify already decided.
    fn vault_target(&mut self, settings: &Settings, addr: String, skip_verify: bool, default_role: &str, object: &ObjectInfo<'_>) -> VaultTarget {
        let auth_method = self.string("vault-auth-method", &settings.auth_method);
        let path = self.string("vault-path", &settings.path);
        let role = self.role(default_role, &auth_method, &path, object);
        VaultTarget {
            addr,
            skip_verify,
            auth_method,
            path,
            role,
            namespace: self.string("vault-namespace", &settings.namespace),
            tls_secret: self.string("vault-tls-secret", &settings.tls_secret),
            client_timeout: self.parsed("vault-client-timeout", settings.client_timeout, "a duration such as 10s", parse_duration),
            ignore_missing_secrets: self.bool("vault-ignore-missing-secrets", settings.ignore_missing_secrets),
            transit_key_id: self.string("transit-key-id", &settings.transit_key_id),
            transit_path: self.string("transit-path", &settings.transit_path),
            transit_batch_size: self.int("transit-batch-size", settings.transit_batch_size),
        }
    }

    /// `vault-role` (else `default_role`), with its template fields filled in.
    fn role(&mut self, default_role: &str, auth_method: &str, path: &str, object: &ObjectInfo<'_>) -> String {
        let source = self.get("vault-role").map(|(_, v)| v.trim().to_string()).unwrap_or_else(|| default_role.to_string());
        let vars = [
            ("authmethod", auth_method),
            ("name", object.name),
            ("namespace", object.namespace),
            ("path", path),
            ("serviceaccount", object.service_account),
        ];
        match render_role(&source, &vars) {
            Ok(role) => role,
            Err(why) => {
                let annotation = self.get("vault-role").map_or_else(|| "VAULT_ROLE (webhook setting)".to_string(), |(n, _)| n);
                self.errors.push(AnnotationError { annotation, value: source.clone(), expected: why });
                source
            }
        }
    }
}

impl PodConfig {
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
        object: &ObjectInfo<'_>,
        settings: &Settings,
    ) -> Result<PodConfig, Vec<AnnotationError>> {
        let mut r = Reader::new(annotations);
        let skip = skipped(annotations, labels);
        let addr = r.parsed("vault-addr", settings.vault_addr.clone(), "an http:// or https:// address with a host", |s| {
            valid_addr(s).then(|| s.to_string())
        });
        let skip_verify = r.bool("vault-skip-verify", settings.skip_verify);
        let default_role = match (settings.role.as_str(), object.service_account) {
            ("", "") => "default",
            ("", sa) => sa,
            (role, _) => role,
        };
        let vault = r.vault_target(settings, addr, skip_verify, default_role, object);
        let token_auth_mount = r.parsed("token-auth-mount", None, "VOLUME:FILE", |s| match s.split_once(':') {
            Some((v, f)) if !v.is_empty() && !f.is_empty() && !f.contains('/') => Some(Some((v.to_string(), f.to_string()))),
            _ => None,
        });
        let config = PodConfig {
            skip,
            vault,
            passthrough: r.string("vault-env-passthrough", &settings.env_passthrough),
            json_log: r.bool("enable-json-log", settings.json_log),
            log_level: r.parsed("log-level", settings.app_log_level.clone(), "a log level (trace, debug, info, warn, error)", |s| {
                matches!(s.to_ascii_lowercase().as_str(), "trace" | "debug" | "info" | "warn" | "warning" | "error").then(|| s.to_string())
            }),
            token_auth_mount,
            daemon: r.parsed("vault-env-daemon", settings.env_daemon, "a boolean (true or false)", |s| parse_bool(s).map(Some)),
            delay: r.parsed("vault-env-delay", settings.env_delay, "a duration such as 10s", |s| parse_duration(s).map(Some)),
            from_path: r.string("vault-env-from-path", ""),
            env_image: r.string("vault-env-image", &settings.env_image),
            env_pull_policy: r.parsed("vault-env-image-pull-policy", settings.env_pull_policy.clone(), "Always, IfNotPresent or Never", pull_policy),
            resources: settings.resources.clone(),
            mutate_probes: r.bool("mutate-probes", false),
            run_as_non_root: r.bool("run-as-non-root", settings.run_as_non_root),
            run_as_user: r.int("run-as-user", settings.run_as_user),
            run_as_group: r.int("run-as-group", settings.run_as_group),
            readonly_root_fs: r.bool("readonly-root-fs", settings.readonly_root_fs),
            allow_privilege_escalation: r.bool("psp-allow-privilege-escalation", settings.allow_privilege_escalation),
            registry_skip_verify: r.bool("registry-skip-verify", settings.registry_skip_verify),
        };
        match r.errors.is_empty() {
            true => Ok(config),
            false => Err(r.errors),
        }
    }
}

/// How the webhook itself reaches Vault for a Secret, ConfigMap or custom object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectConfig {
    /// Its address is checked against `VAULT_ADDR_ALLOWLIST` and the private-address rules.
    pub vault: VaultTarget,
    /// `vault-serviceaccount`: log in as this ServiceAccount of the object's namespace instead of
    /// as the webhook.
    pub service_account: String,
}

impl ObjectConfig {
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        name: &str,
        namespace: &str,
        settings: &Settings,
    ) -> Result<ObjectConfig, Vec<AnnotationError>> {
        let mut r = Reader::new(annotations);
        let addr = match r.get("vault-addr") {
            None => crate::annotations::vault_addr::normalize(&settings.vault_addr),
            Some((annotation, value)) => match crate::annotations::vault_addr::check_object_addr(value, settings) {
                Ok(addr) => addr,
                Err(why) => {
                    r.errors.push(AnnotationError { annotation, value: value.into(), expected: format!("an allowed Vault address: {why}") });
                    String::new()
                }
            },
        };
        let skip_verify = match r.get("vault-skip-verify") {
            Some((annotation, _)) if !settings.allow_object_skip_verify => {
                tracing::warn!("{annotation} is ignored: VAULT_ALLOW_OBJECT_SKIP_VERIFY is off");
                settings.skip_verify
            }
            _ => r.bool("vault-skip-verify", settings.skip_verify),
        };
        let service_account = r.string("vault-serviceaccount", &settings.service_account);
        let default_role = if settings.role.is_empty() { "default" } else { settings.role.as_str() };
        let info = ObjectInfo { name, namespace, service_account: &service_account };
        let vault = r.vault_target(settings, addr, skip_verify, default_role, &info);
        let config = ObjectConfig { vault, service_account };
        match r.errors.is_empty() {
            true => Ok(config),
            false => Err(r.errors),
        }
    }
}

/// Opted out with the `mutate: skip` annotation or the `security.banzaicloud.io/mutate: skip` label.
pub fn skipped(annotations: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    let r = Reader::new(annotations);
    r.string("mutate", "") == "skip" || labels.get(MUTATE_LABEL).is_some_and(|v| v == "skip")
}

/// An address vault-env can use: http(s), a host, no credentials, query or fragment.
pub fn valid_addr(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    !authority.is_empty() && !authority.starts_with(':') && !rest.contains(['@', '?', '#', ' '])
}

/// The `vault-role` Go template, limited to what Bank-Vaults documents: `{{.namespace}}`,
/// `{{ .name }}`, `{{.serviceaccount}}`, `{{.authmethod}}`, `{{.path}}` (missing keys are errors).
pub fn render_role(template: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("a template: {{ is not closed")?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let key = action.strip_prefix('.').ok_or_else(|| format!("a supported template: {{{{{action}}}}} is not a {{{{.field}}}}"))?;
        let value = vars
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("a supported template: no field {key:?} (authmethod, name, namespace, path, serviceaccount)"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::for_tests(&[])
    }

    fn config(pairs: &[(&str, &str)]) -> Result<PodConfig, Vec<AnnotationError>> {
        let annotations = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let info = ObjectInfo { name: "web-1", namespace: "shop", service_account: "web" };
        PodConfig::from_annotations(&annotations, &BTreeMap::new(), &info, &settings())
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
        let names: Vec<&str> = errors.iter().map(|e| e.annotation.as_str()).collect();
        for key in ["vault-env-daemon", "vault-client-timeout", "run-as-user", "vault-addr", "token-auth-mount"] {
            assert!(names.contains(&format!("{PREFIX}{key}").as_str()), "{key} not in {names:?}");
        }
        assert!(errors[0].to_string().starts_with("annotation vault.security.banzaicloud.io/"));
    }

    #[test]
    fn role_templates() {
        let vars = [("namespace", "shop"), ("name", "web-1"), ("serviceaccount", "web")];
        assert_eq!(render_role("{{.namespace}}-reader", &vars).unwrap(), "shop-reader");
        assert_eq!(render_role("{{ .serviceaccount }}@{{.namespace}}", &vars).unwrap(), "web@shop");
        assert_eq!(render_role("plain", &vars).unwrap(), "plain");
        assert!(render_role("{{.nope}}", &vars).unwrap_err().contains("nope"));
        assert!(render_role("{{.namespace", &vars).is_err());
        assert!(render_role("{{ env \"HOME\" }}", &vars).is_err());
        let c = config(&[("vault.security.banzaicloud.io/vault-role", "{{.namespace}}-{{.serviceaccount}}")]).unwrap();
        assert_eq!(c.vault.role, "shop-web");
    }

    #[test]
    fn skip_by_annotation_or_label() {
        assert!(config(&[("vault.security.banzaicloud.io/mutate", "skip")]).unwrap().skip);
        let labels = [(MUTATE_LABEL.to_string(), "skip".to_string())].into();
        let info = ObjectInfo { name: "p", namespace: "n", service_account: "" };
        let c = PodConfig::from_annotations(&BTreeMap::new(), &labels, &info, &settings()).unwrap();
        assert!(c.skip);
        assert_eq!(c.vault.role, "default");
    }

    #[test]
    fn addresses() {
        for ok in ["https://vault:8200", "http://10.0.0.1:8200/", "https://vault.prod.svc"] {
            assert!(valid_addr(ok), "{ok}");
        }
        for bad in ["vault:8200", "file:///etc/passwd", "https://", "https://u:p@vault", "https://vault?x=1", "https://:8200"] {
            assert!(!valid_addr(bad), "{bad}");
        }
    }
}
