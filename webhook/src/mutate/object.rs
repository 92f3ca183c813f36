//! Where `vault:` references sit in Secrets, ConfigMaps and other objects, and how resolved values
//! are written back. Pure: [`slots`] lists the values that hold a reference, each with a place
//! name used in errors (`data[password]`, `spec.tls[0].caBundle`); [`apply`] returns the object
//! with the resolved values in those places. Both walk the object the same way (`walk`).
//!
//! - Secret `data` (base64-decoded first) and `stringData`; in `.dockerconfigjson`, every string
//!   of the JSON and each registry's `auth` (base64 `USER:PASSWORD`, either part a reference).
//!   Unlike Bank-Vaults, registries that are not Vault-backed and extra fields (`email`,
//!   `identitytoken`, …) are kept.
//! - ConfigMap `data`, and `binaryData` whose decoded bytes are a reference: the value in Vault is
//!   base64 and is stored decoded (Bank-Vaults' `configmap.go`).
//! - Any other object: every string leaf (never a map key), except `metadata.managedFields` and
//!   kubectl's last-applied-configuration annotation (a copy of the object as sent: resolving
//!   references there would put secrets into an annotation and break its JSON).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::collections::HashMap;
use vault_env::SecretString;
use vault_env::client::path::{PathError, covers, secret_path};
use vault_env::reference::{Fetch, READ_PREFIX, WRITE_PREFIX, looks_like_reference};
use vault_env::resolve::Plan;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DOCKER_CONFIG_KEYS: &[&str] = &[".dockerconfigjson", ".dockercfg"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    ConfigMap,
    Object,
}

/// A value that holds a reference, and where it sits.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub at: String,
    pub value: String,
}

/// Every value of the object that holds a reference, in a stable order.
pub fn slots(kind: Kind, object: &Value) -> Vec<Slot> {
    let mut out = Vec::new();
    let mut copy = object.clone();
    // Errors only come from replacements, and this pass replaces nothing.
    let _ = walk(kind, &mut copy, &mut |at: &str, value: &str| {
        out.push(Slot { at: at.to_string(), value: value.to_string() });
        None
    });
    out
}

/// Why a resolved object cannot be written: the place (`data[.dockerconfigjson] auths.r.auth`),
/// then what is wrong there. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct ApplyError {
    pub at: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the value from Vault is not base64 (binaryData values are kept base64-encoded in Vault)")]
    NotBase64,
    #[error("{0}")]
    Auth(AuthShape),
}

/// A docker config's `auth` that is not `USER:PASSWORD` with references in the right places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthShape {
    #[error("expected USER:PASSWORD")]
    NoColon,
    #[error("expected vault:PATH#KEY:vault:PATH#KEY (a reference for the username and one for the password)")]
    OneReference,
}

/// The object with `values[at]` in each slot's place; slots without a value are left as they were.
pub fn apply(kind: Kind, object: &Value, values: &HashMap<String, SecretString>) -> Result<Value, ApplyError> {
    let mut copy = object.clone();
    walk(kind, &mut copy, &mut |at: &str, _: &str| values.get(at).map(|v| v.expose().to_string()))?;
    Ok(copy)
}

/// Called with (place, text) for each value holding a reference; returns its replacement.
type Visit<'a> = dyn FnMut(&str, &str) -> Option<String> + 'a;

fn walk(kind: Kind, object: &mut Value, f: &mut Visit<'_>) -> Result<(), ApplyError> {
    match kind {
        Kind::Secret => {
            for (key, v) in entries(object, "data") {
                let Some(text) = v.as_str().and_then(decode_text) else { continue };
                if let Some(new) = text_value(&format!("data[{key}]"), key, &text, f)? {
                    *v = Value::String(STANDARD.encode(new));
                }
            }
            for (key, v) in entries(object, "stringData") {
                let Some(text) = v.as_str().map(str::to_string) else { continue };
                if let Some(new) = text_value(&format!("stringData[{key}]"), key, &text, f)? {
                    *v = Value::String(new);
                }
            }
        }
        Kind::ConfigMap => {
            for (key, v) in entries(object, "data") {
                if let Value::String(text) = v {
                    replace_if_reference(&format!("data[{key}]"), text, f);
                }
            }
            for (key, v) in entries(object, "binaryData") {
                let Some(text) = v.as_str().and_then(decode_text) else { continue };
                let at = format!("binaryData[{key}]");
                if !looks_like_reference(&text) {
                    continue;
                }
                if let Some(new) = f(&at, &text) {
                    let bytes = STANDARD.decode(new.trim()).map_err(|_| ApplyError { at: at.clone(), problem: Problem::NotBase64 })?;
                    *v = Value::String(STANDARD.encode(bytes));
                }
            }
        }
        Kind::Object => {
            if let Value::Object(map) = object {
                for (key, v) in map.iter_mut() {
                    let at = child("", key);
                    if key == "metadata" {
                        walk_metadata(v, &at, f);
                    } else {
                        walk_leaves(v, &at, f);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The entries of the map at `field`, if it is one.
fn entries<'a>(object: &'a mut Value, field: &str) -> impl Iterator<Item = (&'a String, &'a mut Value)> {
    object.get_mut(field).and_then(Value::as_object_mut).into_iter().flat_map(|m| m.iter_mut())
}

fn decode_text(b64: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(b64).ok()?).ok()
}

/// A Secret value: a docker config (walked as JSON) or a text value.
fn text_value(at: &str, key: &str, text: &str, f: &mut Visit<'_>) -> Result<Option<String>, ApplyError> {
    if DOCKER_CONFIG_KEYS.contains(&key)
        && let Ok(mut doc @ Value::Object(_)) = serde_json::from_str::<Value>(text)
    {
        return Ok(walk_docker_config(&mut doc, at, f)?.then(|| doc.to_string()));
    }
    let mut text = text.to_string();
    Ok(replace_if_reference(at, &mut text, f).then_some(text))
}

fn replace_if_reference(at: &str, text: &mut String, f: &mut Visit<'_>) -> bool {
    if !looks_like_reference(text) {
        return false;
    }
    match f(at, text) {
        Some(new) => {
            *text = new;
            true
        }
        None => false,
    }
}

/// `a.b`, `a["key with/odd chars"]`, `a[3]`.
fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{key:?}]"),
    }
}

fn walk_leaves(value: &mut Value, at: &str, f: &mut Visit<'_>) -> bool {
    match value {
        Value::String(s) => replace_if_reference(at, s, f),
        Value::Array(items) => {
            let mut changed = false;
            for (i, item) in items.iter_mut().enumerate() {
                changed |= walk_leaves(item, &format!("{at}[{i}]"), f);
            }
            changed
        }
        Value::Object(map) => {
            let mut changed = false;
            for (k, v) in map.iter_mut() {
                changed |= walk_leaves(v, &child(at, k), f);
            }
            changed
        }
        _ => false,
    }
}

fn walk_metadata(metadata: &mut Value, at: &str, f: &mut Visit<'_>) {
    let Value::Object(map) = metadata else { return };
    for (k, v) in map.iter_mut() {
        match (k.as_str(), v) {
            ("managedFields", _) => {}
            ("annotations", Value::Object(annotations)) => {
                for (name, value) in annotations.iter_mut().filter(|(name, _)| name.as_str() != LAST_APPLIED) {
                    walk_leaves(value, &child(&child(at, "annotations"), name), f);
                }
            }
            (_, v) => {
                walk_leaves(v, &child(at, k), f);
            }
        }
    }
}

/// A docker config: every string, and each `auths.*.auth` as base64 `USER:PASSWORD`.
fn walk_docker_config(doc: &mut Value, at: &str, f: &mut Visit<'_>) -> Result<bool, ApplyError> {
    let mut changed = false;
    let Value::Object(map) = doc else { return Ok(false) };
    for (k, v) in map.iter_mut() {
        let here = format!("{at} {}", child("", k));
        let Some(registries) = v.as_object_mut().filter(|_| k == "auths") else {
            changed |= walk_leaves(v, &here, f);
            continue;
        };
        for (registry, entry) in registries.iter_mut() {
            let entry_at = child(&here, registry);
            let Value::Object(fields) = entry else { continue };
            for (field, v) in fields.iter_mut() {
                match (field.as_str(), v) {
                    ("auth", Value::String(auth)) => changed |= resolve_auth(auth, &child(&entry_at, "auth"), f)?,
                    (_, v) => changed |= walk_leaves(v, &child(&entry_at, field), f),
                }
            }
        }
    }
    Ok(changed)
}

/// `auth` = base64(`USER:PASSWORD`), either part a reference.
fn resolve_auth(auth: &mut String, at: &str, f: &mut Visit<'_>) -> Result<bool, ApplyError> {
    let Some(text) = decode_text(auth) else { return Ok(false) };
    // `user:vault:PATH#KEY` holds a reference after the user name.
    let password_only = [":vault:", ":>>vault:"].iter().any(|m| text.contains(m));
    if !looks_like_reference(&text) && !password_only {
        return Ok(false);
    }
    let (user, password) = split_auth(&text).map_err(|shape| ApplyError { at: at.to_string(), problem: Problem::Auth(shape) })?;
    let mut resolve = |part: &str, label: &str| {
        let mut value = part.to_string();
        replace_if_reference(&format!("{at} ({label})"), &mut value, f).then_some(value)
    };
    let (new_user, new_password) = (resolve(user, "username"), resolve(password, "password"));
    if new_user.is_none() && new_password.is_none() {
        return Ok(false);
    }
    let joined = format!("{}:{}", new_user.as_deref().unwrap_or(user), new_password.as_deref().unwrap_or(password));
    *auth = STANDARD.encode(joined);
    Ok(true)
}

/// Splits `USER:PASSWORD` where either may be a reference (which holds `:` itself when it is
/// `vault:…`): `vault:a#u:vault:a#p`, `vault:v1:…:vault:v1:…`, `user:vault:a#p`.
fn split_auth(text: &str) -> Result<(&str, &str), AuthShape> {
    let reference_first = [READ_PREFIX, WRITE_PREFIX, "${"].iter().find(|p| text.starts_with(**p));
    let Some(prefix) = reference_first else {
        return text.split_once(':').ok_or(AuthShape::NoColon);
    };
    let skip = prefix.len();
    [":vault:", ":>>vault:", ":${vault:", ":${>>vault:"]
        .iter()
        .filter_map(|m| text[skip..].find(m).map(|i| i + skip))
        .min()
        .map(|i| (&text[..i], &text[i + 1..]))
        .ok_or(AuthShape::OneReference)
}

/// At most this many distinct Vault requests for one object (one review could otherwise make
/// hundreds of thousands).
pub const MAX_FETCHES: usize = 100;

/// What an object's references may reach, besides the paths every object is refused.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// The Vault namespace the requests go to (`vault-namespace`): part of the path Vault sees.
    pub namespace: &'a str,
    /// `VAULT_OBJECT_PATHS`: the path prefixes objects may read and write; empty for any.
    pub paths: &'a [String],
    /// The transit decryption path, when the object has ciphertexts.
    pub transit: Option<&'a str>,
}

/// Why [`check_plan`] refuses an object: one per offending key, naming it and the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{key}: {path:?} is refused: {why}")]
    Path { key: String, path: String, why: PathError },
    #[error("{key}: {path:?} is not under the paths objects may read (VAULT_OBJECT_PATHS: {allowed})")]
    OutsidePaths { key: String, path: String, allowed: String },
    #[error("{0} distinct Vault reads: at most {MAX_FETCHES} per object")]
    TooManyReads(usize),
}

/// What the webhook refuses to request for an object, whoever asks: a path that is not
/// canonical or that is not a secret (`auth/`, `sys/`, `identity/`, `cubbyhole/` under any
/// namespace: token lookups return the webhook's own token), a path outside the operator's
/// prefixes, and more than [`MAX_FETCHES`] distinct requests. One reason per offending key,
/// naming it and the path. (The webhook's Vault client refuses the same paths again, below this.)
pub fn check_plan(plan: &Plan, reach: &Reach<'_>) -> Result<(), Vec<Refused>> {
    let mut reasons = Vec::new();
    let namespace = Some(reach.namespace);
    let mut check = |key: &str, path: &str| match secret_path(namespace, path) {
        Err(why) => reasons.push(Refused::Path { key: key.into(), path: path.into(), why }),
        Ok(canonical) if !reach.paths.is_empty() && !reach.paths.iter().any(|p| covers(p, canonical)) => {
            reasons.push(Refused::OutsidePaths { key: key.into(), path: path.into(), allowed: reach.paths.join(",") })
        }
        Ok(_) => {}
    };
    for (key, value) in &plan.vars {
        for r in value.references() {
            match r.fetch() {
                Some(Fetch::Read { path, .. } | Fetch::Write { path, .. }) => check(key, &path),
                None => {
                    if let Some(transit) = reach.transit {
                        check(key, transit)
                    }
                }
            }
        }
    }
    let distinct = plan.fetches.len() + plan.ciphertexts.len().div_ceil(25);
    if distinct > MAX_FETCHES {
        reasons.push(Refused::TooManyReads(plan.fetches.len() + plan.ciphertexts.len()));
    }
    reasons.dedup();
    if reasons.is_empty() { Ok(()) } else { Err(reasons) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(values: &[(&str, &str)]) -> Plan {
        vault_env::resolve::plan_values(values.iter().copied(), false).unwrap()
    }

    const ANY: Reach<'static> = Reach { namespace: "", paths: &[], transit: None };

    /// `vault:auth/token/lookup-self#id` in a ConfigMap would write the webhook's own token; so
    /// would every other spelling that reaches `auth/` once parsed by the URL parser or Vault.
    #[test]
    fn paths_that_are_not_secrets_are_refused_in_any_spelling() {
        for (value, why) in [
            ("vault:auth/token/lookup-self#id", "goes through auth/"),
            ("vault:/auth/token/lookup-self#id", "goes through auth/"),
            ("vault:AUTH/token/lookup-self#id", "goes through AUTH/"),
            ("vault:sys/mounts#x", "goes through sys/"),
            (">>vault:auth/token/create#client_token", "goes through auth/"),
            ("x ${vault:sys/policy/x#keys} y", "goes through sys/"),
            ("vault:secret/../auth/token/lookup-self#id", "\"..\" segment"),
            ("vault:%61uth/token/lookup-self#id", "holds '%'"),
            ("vault:./auth/token/lookup-self#id", "\"..\" segment"),
            ("vault:secret/%2e%2e/auth/token/lookup-self#id", "holds '%'"),
            ("vault:ns1/auth/token/lookup-self#id", "goes through auth/"),
            (">>vault:secret/../auth/token/create#client_token", "segment"),
            ("a ${vault:secret/data/app#x} b ${vault:ns1/auth/token/lookup-self#id}", "goes through auth/"),
        ] {
            let reasons = check_plan(&plan_of(&[("data.t", value)]), &ANY).unwrap_err();
            let reason = reasons[0].to_string();
            assert!(matches!(&reasons[0], Refused::Path { key, .. } if key == "data.t"), "{value}: {reasons:?}");
            assert!(reason.starts_with("data.t: ") && reason.contains(why), "{value}: {reasons:?}");
        }
        assert!(check_plan(&plan_of(&[("data.a", "vault:secret/data/app#password"), ("data.b", "vault:authors/data/x#y")]), &ANY).is_ok());
    }

    #[test]
    fn the_namespace_transit_path_and_operator_prefixes_count() {
        let plan = plan_of(&[("data.t", "vault:token/lookup-self#id")]);
        let reasons = check_plan(&plan, &Reach { namespace: "ns1/auth", ..ANY }).unwrap_err();
        assert!(reasons[0].to_string().contains("goes through auth/"), "{reasons:?}");
        let transit = vault_env::resolve::plan_values([("data.c", "vault:v1:abc")], true).unwrap();
        let reasons = check_plan(&transit, &Reach { transit: Some("auth/token/decrypt/x"), ..ANY }).unwrap_err();
        assert!(reasons[0].to_string().contains("goes through auth/"), "{reasons:?}");
        assert!(check_plan(&transit, &Reach { transit: Some("transit/decrypt/k"), ..ANY }).is_ok());
        let shared = ["secret/data/shared/*".to_string()];
        let only_shared = Reach { paths: &shared, ..ANY };
        assert!(check_plan(&plan_of(&[("data.a", "vault:secret/data/shared/db#pw")]), &only_shared).is_ok());
        let reasons = check_plan(&plan_of(&[("data.a", "vault:secret/data/prod/db#pw")]), &only_shared).unwrap_err();
        assert_eq!(
            reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["data.a: \"secret/data/prod/db\" is not under the paths objects may read (VAULT_OBJECT_PATHS: secret/data/shared/*)"]
        );
    }

    /// One object, a bounded number of Vault reads.
    #[test]
    fn distinct_reads_are_capped() {
        let values: Vec<(String, String)> = (0..=MAX_FETCHES).map(|i| (format!("k{i}"), format!("vault:secret/data/nope{i}#k"))).collect();
        let refs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reasons = check_plan(&plan_of(&refs), &ANY).unwrap_err();
        assert_eq!(reasons, [Refused::TooManyReads(101)]);
        assert_eq!(reasons[0].to_string(), format!("101 distinct Vault reads: at most {MAX_FETCHES} per object"));
        assert!(check_plan(&plan_of(&refs[..MAX_FETCHES]), &ANY).is_ok());
        // The same path many times is one read.
        let same: Vec<(String, String)> = (0..500).map(|i| (format!("k{i}"), "vault:secret/data/app#k".to_string())).collect();
        assert!(check_plan(&plan_of(&same.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>()), &ANY).is_ok());
    }
    use serde_json::json;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn resolved(pairs: &[(&str, &str)]) -> HashMap<String, SecretString> {
        pairs.iter().map(|(k, v)| (k.to_string(), SecretString::new(*v))).collect()
    }

    fn places(kind: Kind, object: &Value) -> Vec<(String, String)> {
        slots(kind, object).into_iter().map(|s| (s.at, s.value)).collect()
    }

    #[test]
    fn secret_data_and_string_data() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": b64("vault:secret/data/db#password"), "plain": b64("hello"), "binary": "/w==",
                     "url": b64("pg://${vault:secret/data/db#user}@db")},
            "stringData": {"token": ">>vault:gen/pw#value"}});
        assert_eq!(
            places(Kind::Secret, &secret),
            [
                ("data[password]".to_string(), "vault:secret/data/db#password".to_string()),
                ("data[url]".into(), "pg://${vault:secret/data/db#user}@db".into()),
                ("stringData[token]".into(), ">>vault:gen/pw#value".into()),
            ]
        );
        let out = apply(Kind::Secret, &secret, &resolved(&[("data[password]", "s3cr3t"), ("data[url]", "pg://me@db"), ("stringData[token]", "t")]))
            .unwrap();
        assert_eq!(out["data"]["password"], b64("s3cr3t"));
        assert_eq!(out["data"]["url"], b64("pg://me@db"));
        assert_eq!(out["data"]["plain"], b64("hello"));
        assert_eq!(out["data"]["binary"], "/w==");
        assert_eq!(out["stringData"]["token"], "t");
        // A missing value (ignore-missing) leaves the place as it was.
        let out = apply(Kind::Secret, &secret, &resolved(&[])).unwrap();
        assert_eq!(out, secret);
    }

    #[test]
    fn docker_config_keeps_other_registries_and_fields() {
        let user = "vault:secret/data/dockerrepo#DOCKER_REPO_USER";
        let password = "vault:secret/data/dockerrepo#DOCKER_REPO_PASSWORD";
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"username": user, "password": password, "email": "ops@example.com",
                                            "auth": b64(&format!("{user}:{password}"))},
            "ghcr.io": {"auth": b64("bot:plain-token"), "identitytoken": "keep-me"},
            "quay.io": {"auth": b64("robot:${vault:secret/data/quay#token}")}},
            "credsStore": "none"});
        let secret = json!({"kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(&config.to_string())}});
        let at: Vec<String> = slots(Kind::Secret, &secret).into_iter().map(|s| s.at).collect();
        let docker = "data[.dockerconfigjson] auths[\"https://index.docker.io/v1/\"]";
        assert_eq!(
            at,
            [
                format!("{docker}.auth (username)"),
                format!("{docker}.auth (password)"),
                format!("{docker}.password"),
                format!("{docker}.username"),
                "data[.dockerconfigjson] auths[\"quay.io\"].auth (password)".to_string(),
            ]
        );
        let values = resolved(&[
            (&format!("{docker}.auth (username)"), "dockerrepouser"),
            (&format!("{docker}.auth (password)"), "dockerrepopassword"),
            (&format!("{docker}.username"), "dockerrepouser"),
            (&format!("{docker}.password"), "dockerrepopassword"),
            ("data[.dockerconfigjson] auths[\"quay.io\"].auth (password)", "qt"),
        ]);
        let out = apply(Kind::Secret, &secret, &values).unwrap();
        let text = decode_text(out["data"][".dockerconfigjson"].as_str().unwrap()).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let hub = &doc["auths"]["https://index.docker.io/v1/"];
        assert_eq!(hub["auth"], b64("dockerrepouser:dockerrepopassword"));
        assert_eq!(
            (hub["username"].as_str(), hub["password"].as_str(), hub["email"].as_str()),
            (Some("dockerrepouser"), Some("dockerrepopassword"), Some("ops@example.com"))
        );
        assert_eq!(doc["auths"]["ghcr.io"], json!({"auth": b64("bot:plain-token"), "identitytoken": "keep-me"}));
        assert_eq!(doc["auths"]["quay.io"]["auth"], b64("robot:qt"));
        assert_eq!(doc["credsStore"], "none");
    }

    #[test]
    fn auth_splitting() {
        assert_eq!(split_auth("vault:a/b#u:vault:a/b#p"), Ok(("vault:a/b#u", "vault:a/b#p")));
        assert_eq!(split_auth("vault:v1:abc=:vault:v1:def="), Ok(("vault:v1:abc=", "vault:v1:def=")));
        assert_eq!(split_auth(">>vault:a#u:${vault:a#p}x"), Ok((">>vault:a#u", "${vault:a#p}x")));
        assert_eq!(split_auth("user:vault:a#p"), Ok(("user", "vault:a#p")));
        // … and that form is resolved (it was never reached: the whole text is not a reference).
        let user_only =
            json!({"kind": "Secret", "data": {".dockerconfigjson": b64(&json!({"auths": {"r": {"auth": b64("bot:vault:a#p")}}}).to_string())}});
        let at = "data[.dockerconfigjson] auths.r.auth (password)";
        assert_eq!(places(Kind::Secret, &user_only), [(at.to_string(), "vault:a#p".to_string())]);
        let out = apply(Kind::Secret, &user_only, &resolved(&[(at, "pw")])).unwrap();
        let doc: Value = serde_json::from_str(&decode_text(out["data"][".dockerconfigjson"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(doc["auths"]["r"]["auth"], b64("bot:pw"));
        assert_eq!(split_auth("vault:a#u-and-no-password"), Err(AuthShape::OneReference));
        assert_eq!(split_auth("no-colon"), Err(AuthShape::NoColon));
        let secret = json!({"kind": "Secret", "data": {".dockerconfigjson": b64(&json!({"auths": {"r": {"auth": b64("vault:a#u")}}}).to_string())}});
        let err = apply(Kind::Secret, &secret, &resolved(&[])).unwrap_err();
        assert_eq!(err, ApplyError { at: "data[.dockerconfigjson] auths.r.auth".into(), problem: Problem::Auth(AuthShape::OneReference) });
        let err = err.to_string();
        assert!(err.starts_with("data[.dockerconfigjson] auths.r.auth: expected vault:PATH#KEY:vault:PATH#KEY"), "{err}");
    }

    #[test]
    fn config_map_data_and_binary_data() {
        let cm = json!({"kind": "ConfigMap",
            "data": {"aws-access-key-id": "vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID", "other": "x"},
            "binaryData": {"bin": b64("vault:secret/data/accounts/aws#BIN"), "raw": "AAEC"}});
        assert_eq!(
            places(Kind::ConfigMap, &cm),
            [
                ("data[aws-access-key-id]".to_string(), "vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID".to_string()),
                ("binaryData[bin]".into(), "vault:secret/data/accounts/aws#BIN".into()),
            ]
        );
        let out = apply(Kind::ConfigMap, &cm, &resolved(&[("data[aws-access-key-id]", "secretId"), ("binaryData[bin]", "AAEC/w==")])).unwrap();
        assert_eq!(out["data"]["aws-access-key-id"], "secretId");
        assert_eq!(out["binaryData"]["bin"], "AAEC/w==");
        assert_eq!(out["binaryData"]["raw"], "AAEC");
        let err = apply(Kind::ConfigMap, &cm, &resolved(&[("binaryData[bin]", "not base64!")])).unwrap_err();
        assert_eq!(err.problem, Problem::NotBase64);
        let err = err.to_string();
        assert!(err.starts_with("binaryData[bin]: the value from Vault is not base64"), "{err}");
        assert!(!err.contains("not base64!"));
    }

    #[test]
    fn objects_walk_string_leaves_but_not_keys_or_last_applied() {
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"name": "t", "annotations": {LAST_APPLIED: "{\"spec\":{\"x\":\"${vault:a#b}\"}}", "note": "vault:a#n"},
                         "managedFields": [{"manager": "vault:a#m"}]},
            "spec": {"caBundle": "vault:pki/cert/1#ca", "vault:a#k": "key stays", "list": ["x", "in ${vault:a#b} text", 3, true, null],
                     "odd key/x": {"v": "vault:a#c"}}});
        assert_eq!(
            places(Kind::Object, &obj),
            [
                ("metadata.annotations.note".to_string(), "vault:a#n".to_string()),
                ("spec.caBundle".into(), "vault:pki/cert/1#ca".into()),
                ("spec.list[1]".into(), "in ${vault:a#b} text".into()),
                ("spec[\"odd key/x\"].v".into(), "vault:a#c".into()),
            ]
        );
        let out =
            apply(Kind::Object, &obj, &resolved(&[("spec.caBundle", "CA"), ("spec.list[1]", "in B text"), ("spec[\"odd key/x\"].v", "C")])).unwrap();
        assert_eq!(out["spec"]["caBundle"], "CA");
        assert_eq!(out["spec"]["list"], json!(["x", "in B text", 3, true, null]));
        assert_eq!(out["spec"]["vault:a#k"], "key stays");
        assert_eq!(out["metadata"], obj["metadata"]);
        let patch = json_patch::diff(&obj, &out);
        assert_eq!(patch.0.len(), 3, "{patch:?}");
    }
}
