//! The Vault settings pods and objects share: the webhook's defaults, and the annotations that
//! override them ([`VaultTarget`]).

use super::keys::*;
use super::role::render_role;
use std::time::Duration;
use vault_env::config::AuthMethod;
use vault_env::config::reader::{FieldError, Reader};

/// The webhook's defaults for the Vault settings of pods and objects (its `VAULT_*` variables);
/// `Default` is Bank-Vaults'.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultDefaults {
    pub addr: String,
    pub skip_verify: bool,
    /// Empty: the pod's ServiceAccount (pods) or `default` (objects).
    pub role: String,
    pub path: String,
    pub auth_method: String,
    pub tls_secret: String,
    pub client_timeout: Duration,
    pub namespace: String,
    pub ignore_missing_secrets: bool,
    pub transit_key_id: String,
    pub transit_path: String,
    pub transit_batch_size: u32,
}

impl Default for VaultDefaults {
    fn default() -> Self {
        VaultDefaults {
            addr: "https://vault:8200".into(),
            skip_verify: false,
            role: String::new(),
            path: "kubernetes".into(),
            auth_method: "jwt".into(),
            tls_secret: String::new(),
            client_timeout: Duration::from_secs(10),
            namespace: String::new(),
            ignore_missing_secrets: false,
            transit_key_id: String::new(),
            transit_path: String::new(),
            transit_batch_size: 25,
        }
    }
}

/// Which Vault, as whom, and how: the settings pods and the webhook's own reads share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultTarget {
    pub addr: String,
    pub skip_verify: bool,
    pub auth_method: String,
    /// The auth method's mount (`VAULT_PATH`).
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

pub type AnnotationReader<'r, 'a> = Reader<'r, Annotations<'a>>;

pub const EXPECTED_KUBE_NAME: &str = "a Kubernetes object name (lower-case letters, digits, '-' and '.', at most 253)";

/// A name that goes into a Kubernetes API path (a DNS-1123 subdomain), or empty for none: no
/// `/`, `..`, `?` or `%` reaches the API server from an annotation.
pub fn kube_name(s: &str) -> Option<String> {
    let label_ok = |l: &str| {
        !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !l.starts_with('-') && !l.ends_with('-')
    };
    (s.is_empty() || (s.len() <= 253 && s.split('.').all(label_ok))).then(|| s.to_string())
}

/// The [`VaultTarget`] annotations, given the address and skip-verify already decided.
pub fn read_vault_target(
    r: &mut AnnotationReader<'_, '_>,
    defaults: &VaultDefaults,
    addr: String,
    skip_verify: bool,
    default_role: &str,
    object: &ObjectInfo<'_>,
) -> VaultTarget {
    let auth_method = r.string(VAULT_AUTH_METHOD, &defaults.auth_method);
    // A method vault-env (or the webhook) would refuse is refused now, naming the annotation,
    // rather than a pod that crash-loops or an object that fails later.
    if AuthMethod::parse(&auth_method).is_none() {
        let name = r.name_of(VAULT_AUTH_METHOD).unwrap_or_else(|| vault_env::config::VAULT_AUTH_METHOD.into());
        r.push(FieldError::invalid(name, &auth_method, AuthMethod::EXPECTED));
    }
    let path = r.string(VAULT_PATH, &defaults.path);
    let role = read_role(r, default_role, &auth_method, &path, object);
    VaultTarget {
        addr,
        skip_verify,
        auth_method,
        path,
        role,
        namespace: r.string(VAULT_NAMESPACE, &defaults.namespace),
        tls_secret: r.parsed(VAULT_TLS_SECRET, defaults.tls_secret.clone(), EXPECTED_KUBE_NAME, kube_name),
        client_timeout: r.duration(VAULT_CLIENT_TIMEOUT, defaults.client_timeout),
        ignore_missing_secrets: r.bool(VAULT_IGNORE_MISSING_SECRETS, defaults.ignore_missing_secrets),
        transit_key_id: r.string(TRANSIT_KEY_ID, &defaults.transit_key_id),
        transit_path: r.string(TRANSIT_PATH, &defaults.transit_path),
        transit_batch_size: r.int(TRANSIT_BATCH_SIZE, defaults.transit_batch_size),
    }
}

/// `vault-role` (else `default_role`), with its template fields filled in.
fn read_role(r: &mut AnnotationReader<'_, '_>, default_role: &str, auth_method: &str, path: &str, object: &ObjectInfo<'_>) -> String {
    let source = r.string(VAULT_ROLE, default_role);
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
            let name = r.name_of(VAULT_ROLE).unwrap_or_else(|| "VAULT_ROLE (webhook setting)".into());
            r.push(FieldError::invalid(name, &source, why.to_string()));
            source
        }
    }
}
