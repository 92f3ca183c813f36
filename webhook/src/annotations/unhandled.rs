//! Annotations under our prefixes that this webhook does not act on: none is ignored in silence
//! (issue 14). Keys of the successor's other providers and keys we do not know at all are
//! admission warnings (`response.warnings`, shown by kubectl).

use super::keys::{ALL as KNOWN, NEW_PREFIX, PREFIX, renamed};
use std::collections::BTreeMap;

/// The successor's keys for its other providers (OpenBao's `bao-*` mirror, AWS).
const OTHER_PROVIDERS: &[&str] =
    &["provider", "aws-region", "aws-load-from-secret", "credentials-namespace", "credentials-secret-name", "aws-tls-secret-arn"];

/// The warnings for what an object's annotations ask for that is not done.
pub fn unhandled(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut warnings = Vec::new();
    for name in annotations.keys() {
        let Some(key) = name.strip_prefix(PREFIX).or_else(|| name.strip_prefix(NEW_PREFIX)) else { continue };
        let key = renamed(key);
        if OTHER_PROVIDERS.contains(&key) || key.starts_with("bao-") {
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
}
