//! Annotations under our prefixes that this webhook does not act on: none is ignored in silence
//! (issue 14). Keys of the successor's other providers and keys we do not know at all are
//! admission warnings (`response.warnings`, shown by kubectl).

use super::keys::{ALL as KNOWN, NEW_PREFIX, PREFIX, bao_alias, renamed};
use std::collections::BTreeMap;

/// The successor's keys for its other providers (AWS).
const OTHER_PROVIDERS: &[&str] = &["aws-region", "aws-load-from-secret", "credentials-namespace", "credentials-secret-name", "aws-tls-secret-arn"];

/// The successor's `provider` values this webhook serves: Vault, and OpenBao (the same protocol).
pub const PROVIDERS: [&str; 2] = ["vault", "bao"];

/// The warnings for what an object's annotations ask for that is not done.
pub fn unhandled(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, value) in annotations {
        let Some(key) = name.strip_prefix(PREFIX).or_else(|| name.strip_prefix(NEW_PREFIX)) else { continue };
        let key = renamed(key);
        // The successor's bao-* keys, which only its prefix has.
        let bao_of_known = name.starts_with(NEW_PREFIX) && bao_alias(key).is_some_and(|k| KNOWN.contains(&renamed(&k)));
        if key == "provider" {
            if !PROVIDERS.contains(&value.trim()) {
                warnings.push(format!("{name}: provider {:?}: only vault and bao (OpenBao) are supported; ignored", value.trim()));
            }
        } else if OTHER_PROVIDERS.contains(&key) || (key.starts_with("bao-") && !name.starts_with(NEW_PREFIX)) {
            warnings.push(format!("{name}: only Vault (and OpenBao through it) is supported; ignored"));
        } else if !KNOWN.contains(&key) && !bao_of_known {
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
            ("vault.security.banzaicloud.io/bao-addr", "https://bao:8200"),
            ("secrets-webhook.security.bank-vaults.io/vault-ct-configmap", "ct2"),
            ("secrets-webhook.security.bank-vaults.io/bao-addr", "https://bao:8200"),
            ("secrets-webhook.security.bank-vaults.io/bao-transit-key-id", "k"),
            ("secrets-webhook.security.bank-vaults.io/bao-adr", "typo"),
            ("secrets-webhook.security.bank-vaults.io/provider", "bao"),
            ("secrets-webhook.security.bank-vaults.io/aws-region", "eu-west-1"),
            ("secrets-webhook.security.bank-vaults.io/vault-transit-key-id", "k"),
            ("example.com/other", "x"),
        ]);
        assert_eq!(
            u,
            [
                "secrets-webhook.security.bank-vaults.io/aws-region: only Vault (and OpenBao through it) is supported; ignored",
                "secrets-webhook.security.bank-vaults.io/bao-adr: not a known annotation; ignored",
                "vault.security.banzaicloud.io/bao-addr: only Vault (and OpenBao through it) is supported; ignored",
                "vault.security.banzaicloud.io/vault-adr: not a known annotation; ignored",
            ]
        );
        assert_eq!(
            of(&[("secrets-webhook.security.bank-vaults.io/provider", "aws")]),
            ["secrets-webhook.security.bank-vaults.io/provider: provider \"aws\": only vault and bao (OpenBao) are supported; ignored"]
        );
    }
}
