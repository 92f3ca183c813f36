//! What every admission shares: the clients and caches ([`Context`]), and why an object is
//! refused ([`Denial`]).

use crate::annotations::{ObjectDefaults, PodDefaults};
use crate::fetch::kube::KubeApi;
use crate::fetch::registry::pull_secrets::PullCredentials;
use crate::fetch::registry::{Platform, Registry, RegistrySettings};
use crate::fetch::vault::{VaultAccess, VaultSettings};
use crate::metrics::Metrics;
use crate::mutate::patch::JsonPatch;
use std::fmt;
use std::sync::Arc;

/// An admitted object: the patch, if it needs one, and warnings for whoever created it
/// (`response.warnings`: kubectl prints them).
#[derive(Debug, Default)]
pub struct Admitted {
    pub patch: Option<JsonPatch>,
    pub warnings: Vec<String>,
}

/// Why an object is refused: whom it is about, and every reason (never a secret value). The
/// review answers it as `allowed: false` with this text.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// `pod shop/web-*`, `secret shop/regcred`.
    pub who: String,
    pub reasons: Vec<String>,
}

impl Denial {
    pub fn new(who: &str, reason: impl fmt::Display) -> Denial {
        Denial { who: who.to_string(), reasons: vec![reason.to_string()] }
    }

    pub fn all<E: fmt::Display>(who: &str, errors: &[E]) -> Denial {
        Denial { who: who.to_string(), reasons: errors.iter().map(ToString::to_string).collect() }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.who, self.reasons.join("; "))
    }
}

pub struct Context {
    pub pods: PodDefaults,
    pub objects: ObjectDefaults,
    pub kube: KubeApi,
    pub pull_credentials: PullCredentials,
    pub registry: Registry,
    pub vault: VaultAccess,
    pub metrics: Arc<Metrics>,
    pub default_platform: Platform,
}

impl Context {
    pub fn new(pods: PodDefaults, objects: ObjectDefaults, registry: &RegistrySettings, vault: VaultSettings) -> Context {
        let metrics = Arc::new(Metrics::new());
        Context {
            pods,
            objects,
            kube: KubeApi::new(metrics.clone()),
            pull_credentials: PullCredentials::new(registry.default_pull_secret.clone(), registry.cache_size, registry.credentials_ttl),
            default_platform: registry.default_platform.clone(),
            registry: Registry::new(registry, metrics.clone()),
            vault: VaultAccess::new(vault, metrics.clone()),
            metrics,
        }
    }

    /// A context with Bank-Vaults' defaults and `vault_addr` (unit tests; nothing is read from
    /// the process environment).
    #[cfg(test)]
    pub fn for_tests(vault_addr: &str) -> Context {
        use crate::annotations::VaultDefaults;
        use crate::annotations::vault_addr::AddrPolicy;
        let vault = VaultDefaults { addr: vault_addr.into(), ..VaultDefaults::default() };
        let pods = PodDefaults { vault: vault.clone(), ..PodDefaults::default() };
        let objects = ObjectDefaults { addr_policy: AddrPolicy::new(vault_addr, "", false), vault, ..ObjectDefaults::default() };
        let base = vault_env::config::Config::from_env(&vault_env::config::Env::default()).expect("vault-env's defaults are valid");
        Context::new(pods, objects, &RegistrySettings::default(), VaultSettings { base, own_namespace: None, clouds: Vec::new() })
    }
}
