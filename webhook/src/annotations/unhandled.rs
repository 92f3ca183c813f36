//! Annotations under our prefixes that this webhook does not act on: none is ignored in silence
//! (issue 14). Keys of the successor's other providers and keys we do not know at all are
//! admission warnings (`response.warnings`, shown by kubectl); so is `vault-agent: "true"` alone.

use super::keys::{ALL as KNOWN, NEW_PREFIX, PREFIX, VAULT_AGENT, VAULT_AGENT_CONFIGMAP, VAULT_CT_CONFIGMAP, renamed};
use std::collections::BTreeMap;

/// The successor's keys for its other providers (OpenBao's `bao-*` mirror, AWS).
const OTHER_PROVIDERS: &[&str] =
    &["provider", "aws-region", "aws-load-from-secret", "credentials-namespace", "credentials-secret-name", "aws-tls-secret-arn"];

/// The warnings for what an object's annotations ask for that is not done.
pub fn unhandled(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut warnings = Vec::new();
    let key_of = |name: &str| name.strip_prefix(PREFIX).or_else(|| name.strip_prefix(NEW_PREFIX)).map(|k| renamed(k).to_string());
    let has = |key: &str| annotations.keys().any(|name| key_of(name).as_deref() == Some(key));
    let agent_does_something = has(VAULT_AGENT_CONFIGMAP) || has(VAULT_CT_CONFIGMAP);
    for (name, value) in annotations {
        let Some(key) = name.strip_prefix(PREFIX).or_else(|| name.strip_prefix(NEW_PREFIX)) else { continue };
        let key = renamed(key);
        if key == VAULT_AGENT {
            // With a vault-agent-configmap it means an init agent (handled); alone, Bank-Vaults'
            // agent only logs in, as vault-env does itself.
            if !agent_does_something && matches!(value.trim(), "true" | "1" | "True" | "TRUE") {
                warnings.push(format!("{name}: no agent is injected; vault-env logs in itself with the same method, role and mount"));
            }
        } else if OTHER_PROVIDERS.contains(&key) || key.starts_with("bao-") {
            warnings.push(format!("{name}: only Vault (and OpenBao through it) is supported; ignored"));
        } else if !KNOWN.contains(&key) {
            warnings.push(format!("{name}: not a known annotation; ignored"));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> Vec<String> {
        unhandled(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
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
        assert_eq!(
            u,
            [
                "secrets-webhook.security.bank-vaults.io/bao-addr: only Vault (and OpenBao through it) is supported; ignored",
                "vault.security.banzaicloud.io/vault-adr: not a known annotation; ignored",
            ]
        );
    }

    /// Bank-Vaults' case A: its agent init container only logs in (kubernetes method, the pod's
    /// role and mount) and hands vault-env the token; vault-env does that login itself.
    #[test]
    fn vault_agent_alone_is_a_warning() {
        assert_eq!(of(&[("vault.security.banzaicloud.io/vault-agent", "false")]), Vec::<String>::new());
        assert_eq!(of(&[("vault.security.banzaicloud.io/vault-agent", "true")]).len(), 1);
        // With the user's agent or consul-template configuration it does something: nothing to say.
        for with in ["vault-agent-configmap", "vault-ct-configmap"] {
            let u = of(&[("vault.security.banzaicloud.io/vault-agent", "true"), (&format!("vault.security.banzaicloud.io/{with}"), "a")]);
            assert_eq!(u, Vec::<String>::new(), "{with}");
        }
    }
}
