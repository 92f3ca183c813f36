//! Annotations under our prefixes that this webhook does not act on: none is ignored in silence
//! (issue 14). Keys that would bring the app its secrets (an agent or consul-template that
//! renders files or logs in for it) are denials: admitted without them, the app would start
//! without its secrets. Other unsupported keys, keys of the successor's other providers, and keys
//! we do not know at all are admission warnings (`response.warnings`, shown by kubectl).

use super::keys::{ALL as KNOWN, NEW_PREFIX, PREFIX, VAULT_AGENT, VAULT_AGENT_CONFIGMAP, renamed};
use std::collections::BTreeMap;

/// Bank-Vaults' consul-template key, whose absence starts the app without the files it renders.
const NEEDED: &[&str] = &["vault-ct-configmap"];

/// Bank-Vaults' other consul-template keys: they only tune the above.
const TUNING: &[&str] = &[
    "vault-ct-image",
    "vault-ct-pull-policy",
    "vault-ct-once",
    "vault-ct-share-process-namespace",
    "vault-ct-cpu",
    "vault-ct-memory",
    "vault-ct-inject-in-initcontainers",
];

/// The successor's keys for its other providers (OpenBao's `bao-*` mirror, AWS).
const OTHER_PROVIDERS: &[&str] =
    &["provider", "aws-region", "aws-load-from-secret", "credentials-namespace", "credentials-secret-name", "aws-tls-secret-arn"];

/// What an object's annotations ask for that is not done: `denials` refuse the object.
#[derive(Debug, Default, PartialEq)]
pub struct Unhandled {
    pub warnings: Vec<String>,
    pub denials: Vec<String>,
}

/// For a pod (`pod`), the keys in [`NEEDED`] are denials; on other objects they mean nothing
/// and are warnings like the rest.
pub fn unhandled(annotations: &BTreeMap<String, String>, pod: bool) -> Unhandled {
    let mut out = Unhandled::default();
    let key_of = |name: &str| name.strip_prefix(PREFIX).or_else(|| name.strip_prefix(NEW_PREFIX)).map(|k| renamed(k).to_string());
    let agent_configmap = annotations.keys().any(|name| key_of(name).as_deref() == Some(VAULT_AGENT_CONFIGMAP));
    for (name, value) in annotations {
        let Some(key) = name.strip_prefix(PREFIX).or_else(|| name.strip_prefix(NEW_PREFIX)) else { continue };
        let key = renamed(key);
        if NEEDED.contains(&key) && pod {
            out.denials.push(format!(
                "annotation {name}: consul-template injection is not supported yet, and without it the app would start \
                 without the files it renders (a vault-agent-configmap with template stanzas does the same job)"
            ));
        } else if key == VAULT_AGENT {
            // With a vault-agent-configmap it means an init agent (handled); alone, Bank-Vaults'
            // agent only logs in, as vault-env does itself.
            if !agent_configmap && matches!(value.trim(), "true" | "1" | "True" | "TRUE") {
                out.warnings.push(format!("{name}: no agent is injected; vault-env logs in itself with the same method, role and mount"));
            }
        } else if TUNING.contains(&key) || NEEDED.contains(&key) {
            out.warnings.push(format!("{name}: not supported yet (consul-template injection); ignored"));
        } else if OTHER_PROVIDERS.contains(&key) || key.starts_with("bao-") {
            out.warnings.push(format!("{name}: only Vault (and OpenBao through it) is supported; ignored"));
        } else if !KNOWN.contains(&key) {
            out.warnings.push(format!("{name}: not a known annotation; ignored"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> Unhandled {
        unhandled(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), true)
    }

    #[test]
    fn nothing_is_ignored_in_silence() {
        let u = of(&[
            ("vault.security.banzaicloud.io/vault-ct-configmap", "ct"),
            ("vault.security.banzaicloud.io/vault-ct-cpu", "50m"),
            ("vault.security.banzaicloud.io/vault-addr", "https://vault:8200"),
            ("vault.security.banzaicloud.io/vault-adr", "typo"),
            ("secrets-webhook.security.bank-vaults.io/vault-ct-configmap", "ct2"),
            ("secrets-webhook.security.bank-vaults.io/bao-addr", "https://bao:8200"),
            ("secrets-webhook.security.bank-vaults.io/vault-transit-key-id", "k"),
            ("example.com/other", "x"),
        ]);
        assert_eq!(u.denials.len(), 2, "{u:?}");
        assert!(u.denials[0].starts_with("annotation secrets-webhook.security.bank-vaults.io/vault-ct-configmap:"), "{u:?}");
        assert!(u.denials[1].starts_with("annotation vault.security.banzaicloud.io/vault-ct-configmap:"), "{u:?}");
        assert_eq!(
            u.warnings,
            [
                "secrets-webhook.security.bank-vaults.io/bao-addr: only Vault (and OpenBao through it) is supported; ignored",
                "vault.security.banzaicloud.io/vault-adr: not a known annotation; ignored",
                "vault.security.banzaicloud.io/vault-ct-cpu: not supported yet (consul-template injection); ignored",
            ]
        );
    }

    /// Bank-Vaults' case A: its agent init container only logs in (kubernetes method, the pod's
    /// role and mount) and hands vault-env the token; vault-env does that login itself.
    #[test]
    fn vault_agent_alone_is_a_warning() {
        assert_eq!(of(&[("vault.security.banzaicloud.io/vault-agent", "false")]), Unhandled::default());
        let u = of(&[("vault.security.banzaicloud.io/vault-agent", "true")]);
        assert_eq!((u.denials.len(), u.warnings.len()), (0, 1), "{u:?}");
        // With the user's agent configuration it is an init agent: handled, nothing to say.
        let u = of(&[("vault.security.banzaicloud.io/vault-agent", "true"), ("vault.security.banzaicloud.io/vault-agent-configmap", "a")]);
        assert_eq!(u, Unhandled::default());
    }
}
