//! Every variable vault-env reads, declared once; the scrub table (which of them never reach the
//! app) is built on the same constants, and the webhook writes pods' variables with them too, so
//! a rename breaks the build.

/// Declares names once: a `pub const` for each (with its doc comment), and `$all`, every one of
/// them in order. `NAME = "value"` for another value, `NAME` alone for the name itself (environment variables).
#[macro_export]
macro_rules! names {
    ($(#[$all_doc:meta])* $all:ident; $($(#[$doc:meta])* $name:ident = $value:expr),* $(,)?) => {
        $($(#[$doc])* pub const $name: &str = $value;)*
        $(#[$all_doc])* pub const $all: &[&str] = &[$($name),*];
    };
    ($(#[$all_doc:meta])* $all:ident; $($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $crate::names!($(#[$all_doc])* $all; $($(#[$doc])* $name = stringify!($name)),*);
    };
}

pub const VAULT_ADDR: &str = "VAULT_ADDR";
pub const VAULT_AGENT_ADDR: &str = "VAULT_AGENT_ADDR";
pub const VAULT_CACERT: &str = "VAULT_CACERT";
pub const VAULT_CAPATH: &str = "VAULT_CAPATH";
pub const VAULT_CACERT_BYTES: &str = "VAULT_CACERT_BYTES";
pub const VAULT_CLIENT_CERT: &str = "VAULT_CLIENT_CERT";
pub const VAULT_CLIENT_KEY: &str = "VAULT_CLIENT_KEY";
pub const VAULT_SKIP_VERIFY: &str = "VAULT_SKIP_VERIFY";
pub const VAULT_TLS_SERVER_NAME: &str = "VAULT_TLS_SERVER_NAME";
pub const VAULT_NAMESPACE: &str = "VAULT_NAMESPACE";
pub const VAULT_CLIENT_TIMEOUT: &str = "VAULT_CLIENT_TIMEOUT";
pub const VAULT_MAX_RETRIES: &str = "VAULT_MAX_RETRIES";
pub const VAULT_HTTP_PROXY: &str = "VAULT_HTTP_PROXY";
pub const VAULT_PROXY_ADDR: &str = "VAULT_PROXY_ADDR";
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
pub const VAULT_TOKEN_FILE: &str = "VAULT_TOKEN_FILE";
pub const VAULT_TOKEN_PATH: &str = "VAULT_TOKEN_PATH";
pub const VAULT_ROLE: &str = "VAULT_ROLE";
pub const VAULT_PATH: &str = "VAULT_PATH";
pub const VAULT_AUTH_METHOD: &str = "VAULT_AUTH_METHOD";
pub const KUBERNETES_SERVICE_ACCOUNT_TOKEN: &str = "KUBERNETES_SERVICE_ACCOUNT_TOKEN";
pub const VAULT_JWT_FILE: &str = "VAULT_JWT_FILE";
pub const VAULT_ROLE_ID: &str = "VAULT_ROLE_ID";
pub const VAULT_ROLE_ID_FILE: &str = "VAULT_ROLE_ID_FILE";
pub const VAULT_SECRET_ID: &str = "VAULT_SECRET_ID";
pub const VAULT_SECRET_ID_FILE: &str = "VAULT_SECRET_ID_FILE";
/// aws-iam: the `X-Vault-AWS-IAM-Server-ID` header value the Vault role may require.
pub const VAULT_AWS_IAM_SERVER_ID: &str = "VAULT_AWS_IAM_SERVER_ID";
pub const VAULT_IGNORE_MISSING_SECRETS: &str = "VAULT_IGNORE_MISSING_SECRETS";
pub const VAULT_ENV_PASSTHROUGH: &str = "VAULT_ENV_PASSTHROUGH";
pub const VAULT_JSON_LOG: &str = "VAULT_JSON_LOG";
pub const VAULT_LOG_LEVEL: &str = "VAULT_LOG_LEVEL";
pub const VAULT_REVOKE_TOKEN: &str = "VAULT_REVOKE_TOKEN";
pub const VAULT_ENV_DAEMON: &str = "VAULT_ENV_DAEMON";
pub const VAULT_ENV_DELAY: &str = "VAULT_ENV_DELAY";
pub const VAULT_ENV_FROM_PATH: &str = "VAULT_ENV_FROM_PATH";
pub const VAULT_TRANSIT_KEY_ID: &str = "VAULT_TRANSIT_KEY_ID";
pub const VAULT_TRANSIT_PATH: &str = "VAULT_TRANSIT_PATH";
pub const VAULT_TRANSIT_BATCH_SIZE: &str = "VAULT_TRANSIT_BATCH_SIZE";
pub const VAULT_ENV_STOP_SIGNAL: &str = "VAULT_ENV_STOP_SIGNAL";
pub const VAULT_ENV_STOP_TIMEOUT: &str = "VAULT_ENV_STOP_TIMEOUT";
pub const VAULT_ENV_ON_LEASE_END: &str = "VAULT_ENV_ON_LEASE_END";
pub const VAULT_ENV_RESTART_SPLAY: &str = "VAULT_ENV_RESTART_SPLAY";
pub const VAULT_ENV_PROCESS_GROUP: &str = "VAULT_ENV_PROCESS_GROUP";
pub const VAULT_ENV_TERMINATE_DESCENDANTS: &str = "VAULT_ENV_TERMINATE_DESCENDANTS";
pub const VAULT_HEADERS: &str = "VAULT_HEADERS";
pub const VAULT_RATE_LIMIT: &str = "VAULT_RATE_LIMIT";
pub const VAULT_DISABLE_REDIRECTS: &str = "VAULT_DISABLE_REDIRECTS";
pub const VAULT_CACERT_RELOAD: &str = "VAULT_CACERT_RELOAD";
pub const VAULT_SRV_LOOKUP: &str = "VAULT_SRV_LOOKUP";
pub const VAULT_WRAP_TTL: &str = "VAULT_WRAP_TTL";
pub const HOME: &str = "HOME";

/// Bank-Vaults' scrub table (vault-env `sanitizeEnvmap`): 33 names. `true` means the variable is
/// passed to the app when `VAULT_TOKEN=vault:login`, so the app can talk to Vault itself.
pub const BANK_VAULTS_SCRUB: [(&str, bool); 33] = [
    (VAULT_TOKEN, true),
    (VAULT_ADDR, true),
    (VAULT_AGENT_ADDR, true),
    (VAULT_CACERT, true),
    (VAULT_CAPATH, true),
    (VAULT_CLIENT_CERT, true),
    (VAULT_CLIENT_KEY, true),
    (VAULT_CLIENT_TIMEOUT, true),
    (VAULT_SRV_LOOKUP, true),
    (VAULT_SKIP_VERIFY, true),
    (VAULT_NAMESPACE, true),
    (VAULT_TLS_SERVER_NAME, true),
    (VAULT_WRAP_TTL, true),
    ("VAULT_MFA", true),
    (VAULT_MAX_RETRIES, true),
    ("VAULT_CLUSTER_ADDR", false),
    ("VAULT_REDIRECT_ADDR", false),
    ("VAULT_CLI_NO_COLOR", false),
    (VAULT_RATE_LIMIT, false),
    (VAULT_ROLE, false),
    (VAULT_PATH, false),
    (VAULT_AUTH_METHOD, false),
    (VAULT_TRANSIT_KEY_ID, false),
    (VAULT_TRANSIT_PATH, false),
    (VAULT_TRANSIT_BATCH_SIZE, false),
    (VAULT_IGNORE_MISSING_SECRETS, false),
    (VAULT_ENV_PASSTHROUGH, false),
    (VAULT_JSON_LOG, false),
    (VAULT_LOG_LEVEL, false),
    (VAULT_REVOKE_TOKEN, false),
    (VAULT_ENV_DAEMON, false),
    (VAULT_ENV_FROM_PATH, false),
    (VAULT_ENV_DELAY, false),
];

/// Settings vault-env reads that Bank-Vaults let through to the app (or that it lacks).
pub const OWN_SCRUB: [(&str, bool); 21] = [
    (VAULT_HEADERS, true),
    (VAULT_DISABLE_REDIRECTS, true),
    (VAULT_CACERT_RELOAD, true),
    (VAULT_CACERT_BYTES, true),
    (VAULT_TOKEN_FILE, true),
    (VAULT_TOKEN_PATH, true),
    (VAULT_HTTP_PROXY, true),
    (VAULT_PROXY_ADDR, true),
    (VAULT_JWT_FILE, false),
    (KUBERNETES_SERVICE_ACCOUNT_TOKEN, false),
    (VAULT_ROLE_ID, false),
    (VAULT_ROLE_ID_FILE, false),
    (VAULT_SECRET_ID, false),
    (VAULT_SECRET_ID_FILE, false),
    (VAULT_AWS_IAM_SERVER_ID, false),
    (VAULT_ENV_STOP_SIGNAL, false),
    (VAULT_ENV_STOP_TIMEOUT, false),
    (VAULT_ENV_ON_LEASE_END, false),
    (VAULT_ENV_RESTART_SPLAY, false),
    (VAULT_ENV_PROCESS_GROUP, false),
    (VAULT_ENV_TERMINATE_DESCENDANTS, false),
];

/// Bank-Vaults' successor (secret-init) names for settings of ours: read as these, scrubbed as
/// these. (`BAO_*` mirrors every `VAULT_*` name: [`canonical_name`].)
pub const SUCCESSOR_ALIASES: [(&str, &str); 6] = [
    ("SECRET_INIT_DAEMON", VAULT_ENV_DAEMON),
    ("SECRET_INIT_DELAY", VAULT_ENV_DELAY),
    ("SECRET_INIT_JSON_LOG", VAULT_JSON_LOG),
    ("SECRET_INIT_LOG_LEVEL", VAULT_LOG_LEVEL),
    ("VAULT_PASSTHROUGH", VAULT_ENV_PASSTHROUGH),
    ("VAULT_FROM_PATH", VAULT_ENV_FROM_PATH),
];

/// Every setting and alias starts with one of these (a test checks the tables against it), so
/// the rest of the environment (hundreds of variables in a namespace with many Services: seven
/// for each) is told apart at a glance instead of by a scan of every table.
const PREFIXES: [&str; 4] = ["VAULT_", "BAO_", "SECRET_INIT_", KUBERNETES_SERVICE_ACCOUNT_TOKEN];

/// Both scrub tables: each setting and whether `VAULT_TOKEN=vault:login` passes it on.
fn scrub_table() -> impl Iterator<Item = &'static (&'static str, bool)> {
    BANK_VAULTS_SCRUB.iter().chain(OWN_SCRUB.iter())
}

/// The name of every setting vault-env reads (not its aliases).
pub fn setting_names() -> impl Iterator<Item = &'static str> {
    scrub_table().map(|(n, _)| *n)
}

/// The setting an alias stands for: a successor name, or `BAO_X` for the `VAULT_X` setting (its
/// OpenBao provider mirrors every `VAULT_*` name). `None` for a name that is no alias.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    if !PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    // `BAO_X` is `VAULT_X`: compared as such, without writing the name out.
    let is = |n: &str| match name.strip_prefix("BAO_") {
        Some(rest) => n.strip_prefix("VAULT_") == Some(rest),
        None => n == name,
    };
    SUCCESSOR_ALIASES.iter().find(|(alias, _)| is(alias)).map(|(_, canonical)| *canonical).or_else(|| setting_names().find(|n| is(n)))
}

/// True for vault-env's own settings (and their aliases): never read as references, never passed
/// on by default.
pub fn is_setting(name: &str) -> bool {
    passed_on_login(name).is_some()
}

/// Whether the setting is passed to the app when `VAULT_TOKEN=vault:login` (`None`: not a setting).
pub fn passed_on_login(name: &str) -> Option<bool> {
    let name = canonical_name(name)?;
    scrub_table().find(|(n, _)| *n == name).map(|&(_, login)| login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_name_our_settings() {
        assert_eq!(canonical_name("BAO_ADDR"), Some(VAULT_ADDR));
        assert_eq!(canonical_name("BAO_TOKEN"), Some(VAULT_TOKEN));
        assert_eq!(canonical_name("BAO_PASSTHROUGH"), Some(VAULT_ENV_PASSTHROUGH));
        assert_eq!(canonical_name("SECRET_INIT_DAEMON"), Some(VAULT_ENV_DAEMON));
        assert_eq!(canonical_name("VAULT_FROM_PATH"), Some(VAULT_ENV_FROM_PATH));
        assert_eq!(canonical_name("VAULT_ADDR"), Some(VAULT_ADDR));
        assert_eq!(canonical_name("BAO_SOMETHING"), None);
        assert_eq!(canonical_name("HOME"), None);
        assert!(is_setting("BAO_TOKEN") && is_setting("SECRET_INIT_LOG_LEVEL"));
        assert_eq!(passed_on_login("BAO_ADDR"), Some(true));
        assert_eq!(passed_on_login("VAULT_MFA"), Some(true));
        assert_eq!(passed_on_login("BAO_VAULT_ADDR"), None);
        assert!(!is_setting("PATH") && !is_setting("VAULT_") && !is_setting("KUBERNETES_SERVICE_HOST"));
    }

    /// The quick check turns away no name of the tables: each is a setting of its own, and each
    /// alias (a `BAO_` name too) stands for its setting.
    #[test]
    fn every_setting_and_alias_passes_the_quick_check() {
        for name in setting_names() {
            assert_eq!(canonical_name(name), Some(name), "{name}");
            assert!(is_setting(name), "{name}");
            if let Some(rest) = name.strip_prefix("VAULT_") {
                assert_eq!(canonical_name(&format!("BAO_{rest}")), Some(name), "BAO_{rest}");
            }
        }
        for (alias, setting) in SUCCESSOR_ALIASES {
            assert_eq!(canonical_name(alias), Some(setting), "{alias}");
        }
    }
}
