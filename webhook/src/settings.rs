//! Webhook-level settings from the environment, with Bank-Vaults' names and defaults (§5.2 of
//! the spec). Pure: [`Settings::from_vars`] reads a lookup function, never the process, and
//! reports every bad variable at once.

use std::time::Duration;
use vault_env::config::{parse_bool, parse_duration};

/// Image whose `/usr/local/bin/vault-env` the `copy-vault-env` init container copies.
pub const DEFAULT_VAULT_ENV_IMAGE: &str = "ghcr.io/vault-env/vault-env:0.1.0";

#[derive(Debug, Clone)]
pub struct Settings {
    // Defaults for the per-pod annotations.
    pub vault_addr: String,
    pub skip_verify: bool,
    pub role: String,
    pub path: String,
    pub auth_method: String,
    pub tls_secret: String,
    pub client_timeout: Duration,
    /// `None` when unset: vault-env then picks daemon mode by itself when a secret has a lease.
    pub env_daemon: Option<bool>,
    pub env_delay: Option<Duration>,
    pub ignore_missing_secrets: bool,
    pub env_passthrough: String,
    pub env_image: String,
    pub env_pull_policy: String,
    pub resources: Resources,
    pub namespace: String,
    pub transit_key_id: String,
    pub transit_path: String,
    pub transit_batch_size: u32,
    pub allow_privilege_escalation: bool,
    pub run_as_non_root: bool,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub readonly_root_fs: bool,
    pub registry_skip_verify: bool,
    /// (secret, namespace, service account): credentials for images of pods with no pull secret.
    pub default_pull_secret: Option<(String, String, String)>,
    /// Default `VAULT_LOG_LEVEL` for apps. Unlike Bank-Vaults, not the webhook's own `LOG_LEVEL`.
    pub app_log_level: String,
    pub json_log: bool,
    // The webhook itself.
    pub log_level: String,
    pub listen_address: String,
    pub telemetry_listen_address: Option<String>,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// How often the certificate files are checked for a change.
    pub tls_reload_interval: Duration,
    pub registry_cache_size: usize,
    pub registry_cache_ttl: Duration,
    /// How long pull credentials (pull secrets and ServiceAccount reads) are reused.
    pub registry_credentials_ttl: Duration,
    pub registry_timeout: Duration,
    /// Amazon ECR through the instance role (the AWS SDKs' variable names).
    pub ecr: crate::fetch::registry::ecr::EcrSettings,
    /// `os/arch[/variant]` picked from multi-platform images when the pod does not say.
    pub default_platform: String,
    /// A `VAULT_TOKEN` set on the webhook. Bank-Vaults copies it into every pod spec in clear text;
    /// we never do (it would land in etcd).
    pub has_vault_token: bool,
    // The webhook's own Vault client (Secrets, ConfigMaps, objects).
    /// `VAULT_ADDR_ALLOWLIST`: addresses a `vault-addr` annotation on an object may name (besides
    /// `VAULT_ADDR`), normalized.
    pub addr_allowlist: Vec<String>,
    /// `VAULT_ALLOW_PRIVATE_ADDR`: loopback and private IP literals are allowed in those annotations.
    pub allow_private_addr: bool,
    /// `VAULT_ALLOW_OBJECT_SKIP_VERIFY`: whether an object's `vault-skip-verify` annotation counts.
    pub allow_object_skip_verify: bool,
    /// `VAULT_SERVICEACCOUNT`: default for the `vault-serviceaccount` annotation.
    pub service_account: String,
    /// `KUBERNETES_NAMESPACE`: where `vault-tls-secret` is read for the webhook's own client (else
    /// the namespace of its service account).
    pub own_namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}={value:?}: expected {expected}")]
pub struct SettingError {
    pub name: String,
    pub value: String,
    pub expected: &'static str,
}

struct Reader<'a, F: Fn(&str) -> Option<String>> {
    get: &'a F,
    errors: Vec<SettingError>,
}

impl<F: Fn(&str) -> Option<String>> Reader<'_, F> {
    fn string(&self, name: &str, default: &str) -> String {
        (self.get)(name).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
    }

    fn parsed<T>(&mut self, name: &str, default: T, expected: &'static str, parse: impl Fn(&str) -> Option<T>) -> T {
        match (self.get)(name).filter(|v| !v.is_empty()) {
            None => default,
            Some(v) => match parse(&v) {
                Some(t) => t,
                None => {
                    self.errors.push(SettingError { name: name.into(), value: v, expected });
                    default
                }
            },
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        self.parsed(name, default, "true or false", parse_bool)
    }

    fn duration(&mut self, name: &str, default: Duration) -> Duration {
        self.parsed(name, default, "a duration such as 10s or 1m30s", parse_duration)
    }

    fn int<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T {
        self.parsed(name, default, "a whole number", |s| s.parse().ok())
    }

    fn quantity(&mut self, name: &str, default: &str) -> String {
        self.parsed(name, default.to_string(), "a Kubernetes quantity such as 100m or 256Mi", |s| is_quantity(s).then(|| s.to_string()))
    }
}

impl Settings {
    pub fn from_process() -> Result<Settings, Vec<SettingError>> {
        Settings::from_vars(&|name| std::env::var(name).ok())
    }

    pub fn from_vars<F: Fn(&str) -> Option<String>>(get: &F) -> Result<Settings, Vec<SettingError>> {
        let mut r = Reader { get, errors: Vec::new() };
        let default_pull_secret = match (
            r.string("DEFAULT_IMAGE_PULL_SECRET", ""),
            r.string("DEFAULT_IMAGE_PULL_SECRET_NAMESPACE", ""),
            r.string("DEFAULT_IMAGE_PULL_SECRET_SERVICE_ACCOUNT", ""),
        ) {
            (s, n, a) if !s.is_empty() && !n.is_empty() => Some((s, n, a)),
            _ => None,
        };
        let s = Settings {
            vault_addr: r.string("VAULT_ADDR", "https://vault:8200"),
            skip_verify: r.bool("VAULT_SKIP_VERIFY", false),
            role: r.string("VAULT_ROLE", ""),
            path: r.string("VAULT_PATH", "kubernetes"),
            auth_method: r.string("VAULT_AUTH_METHOD", "jwt"),
            tls_secret: r.string("VAULT_TLS_SECRET", ""),
            client_timeout: r.duration("VAULT_CLIENT_TIMEOUT", Duration::from_secs(10)),
            env_daemon: r.parsed("VAULT_ENV_DAEMON", None, "true or false", |s| parse_bool(s).map(Some)),
            env_delay: r.parsed("VAULT_ENV_DELAY", None, "a duration such as 10s", |s| parse_duration(s).map(Some)),
            ignore_missing_secrets: r.bool("VAULT_IGNORE_MISSING_SECRETS", false),
            env_passthrough: r.string("VAULT_ENV_PASSTHROUGH", ""),
            env_image: r.string("VAULT_ENV_IMAGE", DEFAULT_VAULT_ENV_IMAGE),
            env_pull_policy: r.parsed("VAULT_ENV_PULL_POLICY", "IfNotPresent".into(), "Always, IfNotPresent or Never", pull_policy),
            resources: Resources {
                cpu_request: r.quantity("VAULT_ENV_CPU_REQUEST", "100m"),
                memory_request: r.quantity("VAULT_ENV_MEMORY_REQUEST", "256Mi"),
                cpu_limit: r.quantity("VAULT_ENV_CPU_LIMIT", "500m"),
                memory_limit: r.quantity("VAULT_ENV_MEMORY_LIMIT", "256Mi"),
            },
            namespace: r.string("VAULT_NAMESPACE", ""),
            transit_key_id: r.string("TRANSIT_KEY_ID", ""),
            transit_path: r.string("TRANSIT_PATH", ""),
            transit_batch_size: r.int("TRANSIT_BATCH_SIZE", 25),
            allow_privilege_escalation: r.bool("PSP_ALLOW_PRIVILEGE_ESCALATION", false),
            run_as_non_root: r.bool("RUN_AS_NON_ROOT", false),
            run_as_user: r.int("RUN_AS_USER", 0),
            run_as_group: r.int("RUN_AS_GROUP", 0),
            readonly_root_fs: r.bool("READONLY_ROOT_FS", false),
            registry_skip_verify: r.bool("REGISTRY_SKIP_VERIFY", false),
            default_pull_secret,
            app_log_level: r.string("VAULT_LOG_LEVEL", "info"),
            json_log: r.bool("ENABLE_JSON_LOG", false),
            log_level: r.string("LOG_LEVEL", "info"),
            listen_address: r.string("LISTEN_ADDRESS", ":8443"),
            telemetry_listen_address: Some(r.string("TELEMETRY_LISTEN_ADDRESS", "")).filter(|s| !s.is_empty()),
            tls_cert_file: r.string("TLS_CERT_FILE", ""),
            tls_key_file: r.string("TLS_PRIVATE_KEY_FILE", ""),
            tls_reload_interval: r.duration("TLS_RELOAD_INTERVAL", Duration::from_secs(5)),
            registry_cache_size: r.int("REGISTRY_CACHE_SIZE", 1024),
            registry_cache_ttl: r.duration("REGISTRY_CACHE_TTL", Duration::from_secs(3600)),
            registry_credentials_ttl: r.duration("REGISTRY_CREDENTIALS_TTL", Duration::from_secs(10)),
            registry_timeout: r.duration("REGISTRY_TIMEOUT", Duration::from_secs(5)),
            ecr: crate::fetch::registry::ecr::EcrSettings {
                source: crate::fetch::registry::ecr::Source::from_vars(get),
                api_endpoint: Some(r.string("AWS_ENDPOINT_URL_ECR", ""))
                    .filter(|s| !s.is_empty())
                    .or_else(|| Some(r.string("AWS_ENDPOINT_URL", "")).filter(|s| !s.is_empty())),
            },
            default_platform: r.parsed("REGISTRY_DEFAULT_PLATFORM", "linux/amd64".into(), "os/arch[/variant], e.g. linux/arm64", |s| {
                (s.split('/').count() >= 2 && !s.split('/').any(str::is_empty)).then(|| s.to_string())
            }),
            has_vault_token: (get)("VAULT_TOKEN").is_some_and(|t| !t.is_empty()),
            addr_allowlist: r
                .string("VAULT_ADDR_ALLOWLIST", "")
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(crate::annotations::vault_addr::normalize)
                .collect(),
            allow_private_addr: r.bool("VAULT_ALLOW_PRIVATE_ADDR", false),
            allow_object_skip_verify: r.bool("VAULT_ALLOW_OBJECT_SKIP_VERIFY", false),
            service_account: r.string("VAULT_SERVICEACCOUNT", ""),
            own_namespace: Some(r.string("KUBERNETES_NAMESPACE", "")).filter(|s| !s.is_empty()),
        };
        if s.tls_cert_file.is_empty() || s.tls_key_file.is_empty() {
            r.errors.push(SettingError {
                name: "TLS_CERT_FILE/TLS_PRIVATE_KEY_FILE".into(),
                value: String::new(),
                expected: "both set: the webhook serves HTTPS only (the API server requires it)",
            });
        }
        match r.errors.is_empty() {
            true => Ok(s),
            false => Err(r.errors),
        }
    }

    /// Settings with the certificate paths filled in and `vars` on top (unit tests).
    #[cfg(test)]
    pub fn for_tests(vars: &[(&str, &str)]) -> Settings {
        let lookup = |n: &str| match n {
            "TLS_CERT_FILE" | "TLS_PRIVATE_KEY_FILE" => Some("/x".to_string()),
            _ => vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()),
        };
        match Settings::from_vars(&lookup) {
            Ok(s) => s,
            Err(e) => panic!("test settings: {e:?}"),
        }
    }

    /// The socket address to bind: Go's `:8443` means every interface.
    pub fn bind_address(addr: &str) -> String {
        match addr.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => addr.to_string(),
        }
    }
}

pub fn pull_policy(s: &str) -> Option<String> {
    matches!(s, "Always" | "IfNotPresent" | "Never").then(|| s.to_string())
}

/// A Kubernetes resource quantity: a decimal number with an optional SI/binary suffix or exponent.
pub fn is_quantity(s: &str) -> bool {
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let digits = number.strip_prefix(['+', '-']).unwrap_or(number);
    let number_ok = !digits.is_empty() && digits.matches('.').count() <= 1 && digits != "." && !digits.contains(['+', '-']);
    let suffix_ok = matches!(suffix, "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei")
        || (suffix.len() > 1
            && suffix.starts_with(['e', 'E'])
            && suffix[1..].trim_start_matches(['+', '-']).chars().all(|c| c.is_ascii_digit())
            && !suffix[1..].trim_start_matches(['+', '-']).is_empty());
    number_ok && suffix_ok
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
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, Vec<SettingError>> {
        let mut map: HashMap<String, String> =
            [("TLS_CERT_FILE", "/c"), ("TLS_PRIVATE_KEY_FILE", "/k")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_vars(&|n| map.get(n).cloned())
    }

    #[test]
    fn defaults_match_bank_vaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.vault_addr, "https://vault:8200");
        assert_eq!(s.path, "kubernetes");
        assert_eq!(s.auth_method, "jwt");
        assert_eq!(s.client_timeout, Duration::from_secs(10));
        assert_eq!(s.transit_batch_size, 25);
        assert_eq!(s.env_pull_policy, "IfNotPresent");
        assert_eq!(s.resources.cpu_request, "100m");
        assert_eq!(s.resources.memory_limit, "256Mi");
        assert_eq!(s.listen_address, ":8443");
        assert_eq!(s.default_pull_secret, None);
    }

    #[test]
    fn every_bad_setting_is_reported_and_https_is_required() {
        let mut map = HashMap::new();
        map.insert("VAULT_SKIP_VERIFY", "maybe");
        map.insert("VAULT_ENV_CPU_LIMIT", "lots");
        map.insert("TRANSIT_BATCH_SIZE", "-1");
        map.insert("VAULT_ENV_PULL_POLICY", "Sometimes");
        let errors = Settings::from_vars(&|n| map.get(n).map(|v| v.to_string())).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        for name in ["VAULT_ENV_PULL_POLICY", "VAULT_ENV_CPU_LIMIT", "TRANSIT_BATCH_SIZE", "VAULT_SKIP_VERIFY", "TLS_CERT_FILE/TLS_PRIVATE_KEY_FILE"]
        {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn default_pull_secret_needs_name_and_namespace() {
        assert_eq!(settings(&[("DEFAULT_IMAGE_PULL_SECRET", "regcred")]).unwrap().default_pull_secret, None);
        let s = settings(&[("DEFAULT_IMAGE_PULL_SECRET", "regcred"), ("DEFAULT_IMAGE_PULL_SECRET_NAMESPACE", "infra")]).unwrap();
        assert_eq!(s.default_pull_secret, Some(("regcred".into(), "infra".into(), String::new())));
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

    #[test]
    fn bind_address_accepts_go_form() {
        assert_eq!(Settings::bind_address(":8443"), "0.0.0.0:8443");
        assert_eq!(Settings::bind_address("127.0.0.1:9443"), "127.0.0.1:9443");
    }
}
