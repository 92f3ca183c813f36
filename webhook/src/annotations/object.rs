//! How the webhook itself reaches Vault for a Secret, ConfigMap or custom object: its annotations
//! over [`ObjectDefaults`], with the address guarded by [`vault_addr::check`].

use super::keys::*;
use super::vault::{EXPECTED_KUBE_NAME, ObjectInfo, VaultDefaults, VaultTarget, kube_name, read_vault_target};
use super::vault_addr;
use std::collections::BTreeMap;
use vault_addr::AddrPolicy;
use vault_env::config::AuthMethod;
use vault_env::config::reader::{FieldError, Lookup, Reader};

/// The webhook's defaults for the objects it resolves itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDefaults {
    pub vault: VaultDefaults,
    /// Which `vault-addr` annotations are allowed.
    pub addr_policy: AddrPolicy,
    /// `VAULT_ALLOW_OBJECT_SKIP_VERIFY`: whether an object's `vault-skip-verify` annotation counts.
    pub allow_skip_verify: bool,
    /// `VAULT_SERVICEACCOUNT`: default for the `vault-serviceaccount` annotation.
    pub service_account: String,
    /// Whether `vault-serviceaccount` may be used: only when every caller is verified as the API
    /// server (`TLS_CLIENT_CA_FILE`), or explicitly allowed without that
    /// (`VAULT_SERVICEACCOUNT_ALLOW_UNVERIFIED_CALLERS`). Otherwise anyone who can reach the
    /// webhook could have it mint a token for any ServiceAccount.
    pub allow_service_account: bool,
}

/// Why a `vault-serviceaccount` annotation is refused.
pub const SERVICE_ACCOUNT_NEEDS_CLIENT_AUTH: &str = "logging in as a ServiceAccount needs callers verified by a client certificate \
     (TLS_CLIENT_CA_FILE on the webhook, the API server's AdmissionConfiguration kubeConfigFile), \
     or VAULT_SERVICEACCOUNT_ALLOW_UNVERIFIED_CALLERS=true";

impl Default for ObjectDefaults {
    fn default() -> Self {
        let vault = VaultDefaults::default();
        ObjectDefaults {
            addr_policy: AddrPolicy::new(&vault.addr, "", false),
            vault,
            allow_skip_verify: false,
            service_account: String::new(),
            allow_service_account: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectConfig {
    /// Its address is checked against `VAULT_ADDR_ALLOWLIST` and the private-address rules.
    pub vault: VaultTarget,
    /// Checked when read: the webhook logs in with it itself.
    pub auth_method: AuthMethod,
    /// `vault-serviceaccount`: log in as this ServiceAccount of the object's namespace instead of
    /// as the webhook.
    pub service_account: String,
}

impl ObjectConfig {
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        name: &str,
        namespace: &str,
        defaults: &ObjectDefaults,
    ) -> Result<ObjectConfig, Vec<FieldError>> {
        let source = Annotations::new(annotations);
        let mut r = Reader::new(&source);
        let d = defaults;
        let addr = match source.find(VAULT_ADDR) {
            None => d.addr_policy.own.clone(),
            Some(found) => {
                let value = found.text.unwrap_or_default();
                match vault_addr::check(value, &d.addr_policy) {
                    Ok(addr) => addr,
                    Err(why) => {
                        r.push(FieldError::invalid(found.name, value, format!("an allowed Vault address: {why}")));
                        String::new()
                    }
                }
            }
        };
        let skip_verify = match r.name_of(VAULT_SKIP_VERIFY) {
            Some(annotation) if !d.allow_skip_verify => {
                tracing::warn!("{annotation} is ignored: VAULT_ALLOW_OBJECT_SKIP_VERIFY is off");
                d.vault.skip_verify
            }
            _ => r.bool(VAULT_SKIP_VERIFY, d.vault.skip_verify),
        };
        let service_account = r.parsed(VAULT_SERVICEACCOUNT, d.service_account.clone(), EXPECTED_KUBE_NAME, kube_name);
        if !service_account.is_empty() && !d.allow_service_account {
            let name = r.name_of(VAULT_SERVICEACCOUNT).unwrap_or_else(|| "VAULT_SERVICEACCOUNT".into());
            r.push(FieldError::other(name, SERVICE_ACCOUNT_NEEDS_CLIENT_AUTH));
        }
        let default_role = if d.vault.role.is_empty() { "default" } else { d.vault.role.as_str() };
        let info = ObjectInfo { name, namespace, service_account: &service_account };
        let vault = read_vault_target(&mut r, &d.vault, addr, skip_verify, default_role, &info);
        // Checked (and reported) when read.
        let auth_method = AuthMethod::parse(&vault.auth_method).unwrap_or(AuthMethod::Jwt);
        r.finish(ObjectConfig { vault, auth_method, service_account })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> BTreeMap<String, String> {
        [(format!("{PREFIX}{key}"), value.to_string())].into()
    }

    /// C1: without verified callers, a forged review could make the webhook log in as any
    /// ServiceAccount; the annotation is refused unless that is allowed.
    #[test]
    fn vault_serviceaccount_needs_verified_callers() {
        let annotations = with(VAULT_SERVICEACCOUNT, "vault-admin");
        let errors = ObjectConfig::from_annotations(&annotations, "s", "kube-system", &ObjectDefaults::default()).unwrap_err();
        assert_eq!(errors[0].to_string(), format!("annotation {PREFIX}vault-serviceaccount: {SERVICE_ACCOUNT_NEEDS_CLIENT_AUTH}"));
        let allowed = ObjectDefaults { allow_service_account: true, ..ObjectDefaults::default() };
        let config = ObjectConfig::from_annotations(&annotations, "s", "kube-system", &allowed).unwrap();
        assert_eq!(config.service_account, "vault-admin");
    }

    /// L4: names that go into Kubernetes API paths are DNS-1123 subdomains.
    #[test]
    fn names_for_api_paths_are_validated() {
        let allowed = ObjectDefaults { allow_service_account: true, ..ObjectDefaults::default() };
        for bad in ["../../../namespaces/kube-system/serviceaccounts/admin", "admin?dryRun=All&x=", "Admin", "a/b", "a%2fb", "-a"] {
            for key in [VAULT_SERVICEACCOUNT, VAULT_TLS_SECRET] {
                let errors = ObjectConfig::from_annotations(&with(key, bad), "s", "shop", &allowed).unwrap_err();
                assert!(errors[0].to_string().contains(EXPECTED_KUBE_NAME), "{key}={bad}: {errors:?}");
            }
        }
        assert!(ObjectConfig::from_annotations(&with(VAULT_TLS_SECRET, "vault-tls.v1"), "s", "shop", &allowed).is_ok());
    }

    #[test]
    fn a_bad_auth_method_is_named_when_read() {
        let annotations = [(format!("{PREFIX}{VAULT_AUTH_METHOD}"), "magic".to_string())].into();
        let errors = ObjectConfig::from_annotations(&annotations, "s", "shop", &ObjectDefaults::default()).unwrap_err();
        assert_eq!(errors[0].to_string(), format!("annotation {PREFIX}vault-auth-method=\"magic\" is not valid: expected {}", AuthMethod::EXPECTED));
    }
}
