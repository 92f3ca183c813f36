//! Vault request paths as Vault routes them, decided in one place.
//!
//! Two layers send a path to Vault and both must agree on what it is: the URL parser (which drops
//! `.` and `..` segments, `%2e%2e` included, and treats `\` as `/`) and Vault itself (which
//! routes on the percent-decoded path and splits a namespace off its front). A check on the text
//! of a reference therefore says nothing about the request: `secret/../auth/token/lookup-self`,
//! `%61uth/token/lookup-self` and `ns1/auth/token/lookup-self` all reach `auth/`.
//!
//! [`canonical`] accepts only paths that every layer reads the same way — no `%`, no `.` or `..`
//! segment, no empty segment, no `\`, `?`, `#`, white space or control character — so that the
//! text checked is the path sent. [`secret_path`] then refuses the surfaces that are not secrets:
//! any segment that names `auth`, `sys`, `identity` or `cubbyhole` (case-insensitively) with
//! more after it. Any position counts because a Vault namespace may stand in front
//! (`ns1/auth/…`, nested namespaces too), and the `X-Vault-Namespace` header is part of the path
//! Vault sees. The price: an object cannot read a KV secret that has a *directory* of one of those
//! names (`secret/data/auth/db`); a secret named so (`secret/data/app/auth`) is fine.

use std::fmt;

/// The mounts whose paths are not secrets: logins and token calls (`auth/token/lookup-self`
/// returns the caller's own token), Vault's own API, identity tokens, and the per-token store
/// where wrapped responses wait.
pub const NOT_SECRETS: [&str; 4] = ["auth", "sys", "identity", "cubbyhole"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// A character the layers read differently (percent-encoding, `\`, `?`, `#`, white space).
    Character(char),
    /// A `.` or `..` segment, which the URL parser removes.
    DotSegment,
    /// `a//b`: routed as `a/b` by some layers and not by others.
    EmptySegment,
    Empty,
    /// A segment naming a surface that is not secrets, with more path after it.
    NotSecrets(String),
    /// The URL to be sent differs from the path that was checked.
    Rewritten,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Character(c) => write!(f, "the path holds {c:?}, which Vault and URL parsers read differently"),
            PathError::DotSegment => f.write_str("the path holds a \".\" or \"..\" segment"),
            PathError::EmptySegment => f.write_str("the path holds an empty segment (\"//\")"),
            PathError::Empty => f.write_str("the path is empty"),
            PathError::NotSecrets(segment) => write!(
                f,
                "the path goes through {segment}/, which is Vault's own API and not secrets ({} are never read for objects)",
                NOT_SECRETS.map(|s| format!("{s}/")).join(", ")
            ),
            PathError::Rewritten => f.write_str("the path would be sent differently from how it reads"),
        }
    }
}

/// The path as Vault will route it, or why it cannot be known. One leading and trailing `/` are
/// dropped (as references always did).
pub fn canonical(path: &str) -> Result<&str, PathError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if let Some(c) = path.chars().find(|c| matches!(c, '%' | '\\' | '?' | '#') || c.is_whitespace() || c.is_control()) {
        return Err(PathError::Character(c));
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(path)
}

/// Checks that `path`, under the Vault namespace `namespace` (the `X-Vault-Namespace` header,
/// which Vault puts in front of the path), is canonical and reaches a secret, not `auth/`,
/// `sys/`, `identity/` or `cubbyhole/`. Returns the canonical path.
pub fn secret_path<'a>(namespace: Option<&str>, path: &'a str) -> Result<&'a str, PathError> {
    let path = canonical(path)?;
    let namespace = match namespace.map(str::trim).filter(|n| !n.trim_matches('/').is_empty()) {
        Some(ns) => canonical(ns)?.split('/').collect(),
        None => Vec::new(),
    };
    let segments: Vec<&str> = namespace.into_iter().chain(path.split('/')).collect();
    let (_, with_more_after) = segments.split_last().unwrap_or((&"", &[]));
    if let Some(s) = with_more_after.iter().find(|s| NOT_SECRETS.iter().any(|n| s.eq_ignore_ascii_case(n))) {
        return Err(PathError::NotSecrets(s.to_string()));
    }
    Ok(path)
}

/// True when `prefix` (from an operator's list) covers `path`: a whole-segment prefix
/// (`secret/data/shared` covers `secret/data/shared/db`, not `secret/data/sharedx`), or with a
/// trailing `*` any continuation (`secret/data/team-*`).
pub fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_start_matches('/');
    if prefix == "*" {
        return true;
    }
    if let Some(stem) = prefix.strip_suffix('*') {
        return path.starts_with(stem);
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bypasses of a check that looked at the first segment only, and
    /// their neighbours: each is refused, with the reason it cannot be trusted.
    #[test]
    fn spellings_that_reach_auth_or_sys_are_refused() {
        for (path, why) in [
            ("auth/token/lookup-self", PathError::NotSecrets("auth".into())),
            ("/auth/token/lookup-self", PathError::NotSecrets("auth".into())),
            ("AUTH/token/lookup-self", PathError::NotSecrets("AUTH".into())),
            ("sys/mounts", PathError::NotSecrets("sys".into())),
            ("secret/../auth/token/lookup-self", PathError::DotSegment),
            ("./auth/token/lookup-self", PathError::DotSegment),
            ("secret/%2e%2e/auth/token/lookup-self", PathError::Character('%')),
            ("%61uth/token/lookup-self", PathError::Character('%')),
            ("%73ys/mounts", PathError::Character('%')),
            ("ns1/auth/token/lookup-self", PathError::NotSecrets("auth".into())),
            ("ns1/ns2/Sys/mounts", PathError::NotSecrets("Sys".into())),
            ("auth//token/lookup-self", PathError::EmptySegment),
            ("secret//../auth/token/lookup-self", PathError::EmptySegment),
            ("secret\\..\\auth/token/lookup-self", PathError::Character('\\')),
            ("au\tth/token/lookup-self", PathError::Character('\t')),
            ("auth/token/lookup-self?x=1", PathError::Character('?')),
            ("identity/oidc/token/app", PathError::NotSecrets("identity".into())),
            ("cubbyhole/response", PathError::NotSecrets("cubbyhole".into())),
            ("", PathError::Empty),
            ("/", PathError::Empty),
        ] {
            assert_eq!(secret_path(None, path), Err(why), "{path}");
        }
    }

    #[test]
    fn the_namespace_is_part_of_the_path() {
        assert_eq!(secret_path(Some("ns1/auth"), "token/lookup-self"), Err(PathError::NotSecrets("auth".into())));
        assert_eq!(secret_path(Some("../x"), "secret/data/a"), Err(PathError::DotSegment));
        assert_eq!(secret_path(Some("team%2fa"), "secret/data/a"), Err(PathError::Character('%')));
        assert_eq!(secret_path(Some("team-a/"), "secret/data/a"), Ok("secret/data/a"));
        assert_eq!(secret_path(Some(" / "), "secret/data/a"), Ok("secret/data/a"));
        // A namespace named like a surface, with the secret after it, is still that namespace.
        assert_eq!(secret_path(Some("sys"), "secret/data/a"), Err(PathError::NotSecrets("sys".into())));
    }

    #[test]
    fn secrets_pass_and_a_secret_may_be_named_like_a_surface() {
        for path in
            ["secret/data/app", "/secret/data/app/", "kv1/legacy", "authors/data/x", "secret/data/app/auth", "database/creds/app", "pki/issue/web"]
        {
            assert!(secret_path(None, path).is_ok(), "{path}");
        }
        assert_eq!(secret_path(None, "secret/data/auth/db"), Err(PathError::NotSecrets("auth".into())));
    }

    #[test]
    fn prefixes_cover_whole_segments_or_a_star() {
        assert!(covers("secret/data/shared", "secret/data/shared/db"));
        assert!(covers("secret/data/shared/", "secret/data/shared/db"));
        assert!(covers("secret/data/shared/*", "secret/data/shared/db"));
        assert!(covers("secret/data/shared", "secret/data/shared"));
        assert!(!covers("secret/data/shared", "secret/data/sharedx"));
        assert!(covers("secret/data/team-*", "secret/data/team-a/x"));
        assert!(!covers("secret/data/team-*", "secret/data/other"));
        assert!(covers("*", "anything/at/all"));
    }
}
