//! How the webhook itself reaches Vault for a Secret, ConfigMap or custom object: its annotations
//! over [`ObjectDefaults`], with the address guarded by [`vault_addr::check`].

use super::keys::*;
use super::vault::{AnnotationReader, EXPECTED_KUBE_NAME, ObjectInfo, VaultDefaults, VaultTarget, kube_name, read_vault_target};
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
    /// `VAULT_OBJECT_LOGINS`: the logins other than the webhook's own default that an object's
    /// `vault-auth-method`/`vault-path`/`vault-role` may select for the webhook's identity.
    pub logins: Vec<LoginRule>,
    /// `VAULT_OBJECT_PATHS`: the Vault path prefixes objects may read and write; empty for any
    /// secret path.
    pub paths: Vec<String>,
    /// `VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS`: return secret values to callers without a client
    /// certificate (when the network alone keeps everyone but the API server away).
    pub allow_unverified_callers: bool,
    /// The webhook uses a token it was given (`VAULT_TOKEN`, `VAULT_TOKEN_FILE`): it never logs
    /// in, so the login annotations choose nothing.
    pub given_token: bool,
}

/// One `VAULT_OBJECT_LOGINS` entry: `[METHOD:]MOUNT:ROLE`, where any part may be `*` and the role
/// may end with `*` (a prefix). `*` alone allows any login (Bank-Vaults' behaviour).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRule {
    pub method: String,
    pub mount: String,
    pub role: String,
}

pub const EXPECTED_LOGINS: &str = "a comma-separated list of [METHOD:]MOUNT:ROLE (each part may be *, a role may end with *), or *";

impl LoginRule {
    /// `VAULT_OBJECT_LOGINS`, or `None` when an entry is malformed.
    pub fn parse_list(text: &str) -> Option<Vec<LoginRule>> {
        let rule = |entry: &str| -> Option<LoginRule> {
            let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
            let (method, mount, role) = match parts.as_slice() {
                ["*"] => ("*", "*", "*"),
                [mount, role] => ("", *mount, *role),
                [method, mount, role] => (*method, *mount, *role),
                _ => return None,
            };
            let ok = |p: &str| !p.is_empty();
            (ok(mount) && ok(role) && (method.is_empty() || method == "*" || AuthMethod::parse(method).is_some())).then(|| LoginRule {
                method: method.to_string(),
                mount: mount.trim_matches('/').to_string(),
                role: role.to_string(),
            })
        };
        text.split(',').map(str::trim).filter(|e| !e.is_empty()).map(rule).collect()
    }

    /// Whether this rule allows logging in with `method` at `mount` as `role` (`default_method`
    /// stands for a rule that names none).
    fn allows(&self, method: &str, default_method: &str, mount: &str, role: &str) -> bool {
        let method_ok = match self.method.as_str() {
            "*" => true,
            "" => method == default_method,
            m => m == method,
        };
        let role_ok = match self.role.strip_suffix('*') {
            Some(stem) => role.starts_with(stem),
            None => self.role == role,
        };
        method_ok && (self.mount == "*" || self.mount == mount) && role_ok
    }
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
            logins: Vec::new(),
            paths: Vec::new(),
            allow_unverified_callers: false,
            given_token: false,
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
    /// The transit mount the object's ciphertexts are decrypted at (`vault-transit-path`, else
    /// `transit`).
    pub fn transit_mount(&self) -> &str {
        match self.vault.transit_path.trim_matches('/') {
            "" => "transit",
            path => path,
        }
    }

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
        if service_account.is_empty() && !d.given_token && AuthMethod::parse(&vault.auth_method).is_some() {
            check_login(&mut r, d, default_role, &vault);
        }
        r.finish(ObjectConfig { vault, auth_method, service_account })
    }
}

/// With the webhook's own identity, an object may only pick a login the operator allows: the
/// webhook's default method, mount and role, or one `VAULT_OBJECT_LOGINS` lists. Otherwise
/// anyone who may create a Secret would get the webhook to log in as any role its identity may
/// use (and read that role's secrets). With `vault-serviceaccount` Vault's own role bindings
/// decide instead, so this does not apply.
fn check_login(r: &mut AnnotationReader<'_, '_>, d: &ObjectDefaults, default_role: &str, vault: &VaultTarget) {
    let normal = |ns: &str| ns.trim().trim_matches('/').to_string();
    // Another Vault namespace is another set of mounts and roles that may trust the webhook's
    // identity: a rule names it in front of the mount (`team-b/kubernetes:reader`).
    let namespace = normal(&vault.namespace);
    let mount = match namespace.as_str() {
        ns if ns == normal(&d.vault.namespace) || ns.is_empty() => vault.path.trim_matches('/').to_string(),
        ns => format!("{ns}/{}", vault.path.trim_matches('/')),
    };
    // An annotation absent, or naming the default, chooses nothing (the default role may be a
    // template, which only the annotation's absence keeps as rendered).
    let same = |key: &str, is_default: bool| r.name_of(key).is_none() || is_default;
    let is_default = same(VAULT_AUTH_METHOD, vault.auth_method == d.vault.auth_method)
        && same(VAULT_PATH, vault.path.trim_matches('/') == d.vault.path.trim_matches('/'))
        && same(VAULT_NAMESPACE, namespace == normal(&d.vault.namespace))
        && same(VAULT_ROLE, vault.role == default_role);
    if is_default || d.logins.iter().any(|rule| rule.allows(&vault.auth_method, &d.vault.auth_method, &mount, &vault.role)) {
        return;
    }
    let chosen = [VAULT_ROLE, VAULT_PATH, VAULT_AUTH_METHOD, VAULT_NAMESPACE].into_iter().filter_map(|k| r.name_of(k)).collect::<Vec<_>>().join(", ");
    r.push(FieldError::other(
        if chosen.is_empty() { VAULT_ROLE.to_string() } else { chosen },
        format!(
            "objects may not choose how the webhook logs in ({}:{mount}:{}): allowed are its default ({}:{}:{default_role}) and what \
             VAULT_OBJECT_LOGINS lists; or resolve the object as a ServiceAccount of its namespace (vault-serviceaccount)",
            vault.auth_method,
            vault.role,
            d.vault.auth_method,
            d.vault.path.trim_matches('/'),
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> BTreeMap<String, String> {
        [(format!("{PREFIX}{key}"), value.to_string())].into()
    }

    /// Without verified callers, a forged review could make the webhook log in as any
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

    /// Names that go into Kubernetes API paths are DNS-1123 subdomains.
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

    /// A role escalation: a ConfigMap named `vault-role: deployer` and got
    /// a token for that role of the webhook's identity. Only the default, or what the operator
    /// lists, may be chosen.
    #[test]
    fn objects_choose_only_allowed_logins() {
        let role = |r: &str| with(VAULT_ROLE, r);
        let errors = ObjectConfig::from_annotations(&role("deployer"), "c", "shop", &ObjectDefaults::default()).unwrap_err();
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with(&format!("annotation {PREFIX}vault-role: objects may not choose how the webhook logs in (jwt:kubernetes:deployer)")),
            "{text}"
        );
        // The seed's own example names the defaults: allowed.
        let seed: BTreeMap<String, String> =
            [(format!("{PREFIX}{VAULT_ROLE}"), "default".to_string()), (format!("{PREFIX}{VAULT_PATH}"), "kubernetes".to_string())].into();
        assert!(ObjectConfig::from_annotations(&seed, "c", "shop", &ObjectDefaults::default()).is_ok());
        let mut path = with(VAULT_PATH, "other");
        assert!(ObjectConfig::from_annotations(&path, "c", "shop", &ObjectDefaults::default()).is_err());
        path.insert(format!("{PREFIX}{VAULT_AUTH_METHOD}"), "approle".into());
        let errors = ObjectConfig::from_annotations(&path, "c", "shop", &ObjectDefaults::default()).unwrap_err();
        assert!(errors[0].to_string().starts_with(&format!("annotation {PREFIX}vault-path, annotation {PREFIX}vault-auth-method: ")), "{errors:?}");
        // What the operator lists.
        let listed = ObjectDefaults { logins: LoginRule::parse_list("kubernetes:team-*, approle:other:x").unwrap(), ..ObjectDefaults::default() };
        assert!(ObjectConfig::from_annotations(&role("team-a"), "c", "shop", &listed).is_ok());
        assert!(ObjectConfig::from_annotations(&role("deployer"), "c", "shop", &listed).is_err());
        let mut approle = with(VAULT_PATH, "other");
        approle.insert(format!("{PREFIX}{VAULT_AUTH_METHOD}"), "approle".into());
        approle.insert(format!("{PREFIX}{VAULT_ROLE}"), "x".into());
        assert!(ObjectConfig::from_annotations(&approle, "c", "shop", &listed).is_ok());
        let any = ObjectDefaults { logins: LoginRule::parse_list("*").unwrap(), ..ObjectDefaults::default() };
        assert!(ObjectConfig::from_annotations(&role("deployer"), "c", "shop", &any).is_ok());
        // As a ServiceAccount of the object's namespace, Vault's role bindings decide.
        let mut as_sa = role("deployer");
        as_sa.insert(format!("{PREFIX}{VAULT_SERVICEACCOUNT}"), "app".into());
        let allowed = ObjectDefaults { allow_service_account: true, ..ObjectDefaults::default() };
        assert!(ObjectConfig::from_annotations(&as_sa, "c", "shop", &allowed).is_ok());
        // Another Vault namespace is another login too; a rule names it in front of the mount.
        let errors = ObjectConfig::from_annotations(&with(VAULT_NAMESPACE, "team-b"), "c", "shop", &ObjectDefaults::default()).unwrap_err();
        assert!(errors[0].to_string().contains("(jwt:team-b/kubernetes:default)"), "{errors:?}");
        assert!(ObjectConfig::from_annotations(&with(VAULT_NAMESPACE, " / "), "c", "shop", &ObjectDefaults::default()).is_ok());
        let team_b = ObjectDefaults { logins: LoginRule::parse_list("team-b/kubernetes:default").unwrap(), ..ObjectDefaults::default() };
        assert!(ObjectConfig::from_annotations(&with(VAULT_NAMESPACE, "/team-b/"), "c", "shop", &team_b).is_ok());
        for bad in ["a:b:c:d", "kubernetes:", ":role", "magic:kubernetes:x"] {
            assert_eq!(LoginRule::parse_list(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bad_auth_method_is_named_when_read() {
        let annotations = [(format!("{PREFIX}{VAULT_AUTH_METHOD}"), "magic".to_string())].into();
        let errors = ObjectConfig::from_annotations(&annotations, "s", "shop", &ObjectDefaults::default()).unwrap_err();
        assert_eq!(errors[0].to_string(), format!("annotation {PREFIX}vault-auth-method=\"magic\" is not valid: expected {}", AuthMethod::EXPECTED));
    }
}
