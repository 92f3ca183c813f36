//! The app's environment: the parent's, in order, with references replaced by their values and
//! vault-env's own settings removed, so the Vault token and configuration never reach the app
//! unless asked for (`VAULT_TOKEN=vault:login`, `VAULT_ENV_PASSTHROUGH`). The same in every mode
//! (Bank-Vaults' daemon mode passes everything through).

use crate::SecretString;
use crate::config::{self, Config, Env};
use crate::resolve::Resolved;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};

/// Builds the app's environment.
///
/// `login_token` is the token to hand over as `VAULT_TOKEN` when `VAULT_TOKEN=vault:login`.
pub fn build(env: &Env, config: &Config, resolved: &Resolved, login_token: Option<&SecretString>) -> Vec<(OsString, OsString)> {
    let passthrough: HashSet<&str> = config.passthrough.iter().map(String::as_str).collect();
    let login = config.auth.login_requested;
    let mut out: Vec<(OsString, OsString)> = Vec::with_capacity(env.vars().len() + resolved.from_path.len());
    let mut seen: HashSet<&OsStr> = HashSet::with_capacity(out.capacity());
    for (name, value) in env.vars() {
        let key = name.to_str().unwrap_or_default();
        if let Some(on_login) = config::passed_on_login(key)
            && !passthrough.contains(key)
            && !(login && on_login)
        {
            continue;
        }
        if resolved.dropped.contains(key) || !seen.insert(name) {
            continue;
        }
        let value = if config::canonical_name(key) == Some(config::VAULT_TOKEN) && login {
            match login_token {
                Some(t) => OsString::from(t.expose()),
                None => continue,
            }
        } else if let Some(v) = resolved.values.get(key) {
            OsString::from(v.expose())
        } else {
            value.clone()
        };
        out.push((name.clone(), value));
    }
    // VAULT_ENV_FROM_PATH never overrides a variable the pod sets itself; the first path wins.
    for (name, value) in &resolved.from_path {
        if seen.insert(OsStr::new(name)) {
            out.push((name.into(), value.expose().into()));
        } else {
            tracing::debug!("{name} from {} is shadowed by an earlier definition", config::VAULT_ENV_FROM_PATH);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BANK_VAULTS_SCRUB;

    fn run(vars: &[(&str, &str)], resolved: &Resolved, token: Option<&str>) -> Vec<(String, String)> {
        let env: Env = vars.iter().map(|(k, v)| (*k, *v)).collect();
        let config = Config::from_env(&env).unwrap();
        let token = token.map(SecretString::new);
        build(&env, &config, resolved, token.as_ref()).into_iter().map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap())).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn child_env_strips_every_setting() {
        let mut vars: Vec<(&str, &str)> = config::setting_names().map(|n| (n, "x")).collect();
        vars.push(("PATH", "/bin"));
        let env: Env = vars.iter().map(|(k, v)| (*k, *v)).collect();
        let config = Config::from_env(&Env::default()).unwrap();
        let got = build(&env, &config, &Resolved::default(), None);
        assert_eq!(got, vec![(OsString::from("PATH"), OsString::from("/bin"))]);
    }

    #[test]
    fn child_env_bank_vaults_table_has_33_names() {
        let names: HashSet<&str> = BANK_VAULTS_SCRUB.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), 33);
        assert_eq!(BANK_VAULTS_SCRUB.iter().filter(|(_, login)| *login).count(), 15);
    }

    #[test]
    fn child_env_login_passes_token_and_login_safe_vars() {
        let vars = [("VAULT_TOKEN", "vault:login"), ("VAULT_ADDR", "http://v:8200"), ("VAULT_ROLE", "app"), ("A", "1")];
        let got = run(&vars, &Resolved::default(), Some("s.obtained"));
        assert_eq!(got, pairs(&[("VAULT_TOKEN", "s.obtained"), ("VAULT_ADDR", "http://v:8200"), ("A", "1")]));
    }

    #[test]
    fn child_env_passthrough_and_resolved_values() {
        let mut resolved = Resolved::default();
        resolved.values.insert("DB".into(), SecretString::new("secret"));
        resolved.dropped.insert("GONE".into());
        resolved.from_path = vec![("A".into(), SecretString::new("from-path")), ("NEW".into(), SecretString::new("n"))];
        let vars = [
            ("VAULT_TOKEN", "s.root"),
            ("VAULT_ADDR", "http://v"),
            ("VAULT_ENV_PASSTHROUGH", "VAULT_ADDR"),
            ("DB", "vault:x#y"),
            ("GONE", "vault:x#z"),
            ("A", "pod value wins"),
        ];
        let got = run(&vars, &resolved, None);
        assert_eq!(got, pairs(&[("VAULT_ADDR", "http://v"), ("DB", "secret"), ("A", "pod value wins"), ("NEW", "n")]));
    }
}
