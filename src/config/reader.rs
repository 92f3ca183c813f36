//! The one reader of every key/value source: the process environment ([`super::Env`]), the
//! webhook's annotations, a test's table. It collects every bad value before failing, so a user
//! sees all of them in one run, and every message has one shape:
//! `NAME="value" is not valid: expected …` (a secret's value is never shown: `NAME is not valid: …`).

use crate::SecretString;
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// One entry found in a source.
pub struct Found<'a> {
    /// How errors name it: the variable, or `annotation vault.security.banzaicloud.io/KEY`.
    pub name: Cow<'a, str>,
    /// `None` when the value is not UTF-8.
    pub text: Option<&'a str>,
}

/// A source of named values.
pub trait Lookup {
    /// The entry for `key`, or `None` when it is not set.
    fn find(&self, key: &str) -> Option<Found<'_>>;
}

impl<K: AsRef<str> + Ord, V: AsRef<str>> Lookup for std::collections::BTreeMap<K, V> {
    fn find(&self, key: &str) -> Option<Found<'_>> {
        let (k, v) = self.iter().find(|(k, _)| k.as_ref() == key)?;
        Some(Found { name: Cow::Borrowed(k.as_ref()), text: Some(v.as_ref()) })
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Lookup for [(K, V)] {
    fn find(&self, key: &str) -> Option<Found<'_>> {
        let (k, v) = self.iter().rev().find(|(k, _)| k.as_ref() == key)?;
        Some(Found { name: Cow::Borrowed(k.as_ref()), text: Some(v.as_ref()) })
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The value does not parse; `value` is `None` for settings that hold secrets.
    Invalid { value: Option<String>, expected: String },
    /// Anything else: "is not valid UTF-8", "must be set when X is", …
    Other(String),
}

/// One bad field of a source, named as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub name: String,
    pub problem: Problem,
}

impl FieldError {
    pub fn invalid(name: impl Into<String>, value: &str, expected: impl Into<String>) -> FieldError {
        FieldError { name: name.into(), problem: Problem::Invalid { value: Some(value.to_string()), expected: expected.into() } }
    }

    pub fn other(name: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { name: name.into(), problem: Problem::Other(message.into()) }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Invalid { value: Some(v), expected } => write!(f, "{}={v:?} is not valid: expected {expected}", self.name),
            Problem::Invalid { value: None, expected } => write!(f, "{} is not valid: expected {expected}", self.name),
            Problem::Other(message) => write!(f, "{}: {message}", self.name),
        }
    }
}

impl std::error::Error for FieldError {}

/// Reads typed values from a [`Lookup`], collecting every error. Unset and empty are the same.
pub struct Reader<'a, S: Lookup + ?Sized> {
    source: &'a S,
    errors: Vec<FieldError>,
}

impl<'a, S: Lookup + ?Sized> Reader<'a, S> {
    pub fn new(source: &'a S) -> Self {
        Reader { source, errors: Vec::new() }
    }

    /// Records an error about `key`, named as the source names it.
    pub fn fail(&mut self, key: &str, message: impl Into<String>) {
        let name = self.source.find(key).map_or_else(|| key.to_string(), |f| f.name.into_owned());
        self.errors.push(FieldError::other(name, message));
    }

    /// Records an error about something that is not one key (e.g. two that go together).
    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// The raw entry, UTF-8 checked: `None` when unset or empty.
    fn entry(&mut self, key: &str) -> Option<(Cow<'a, str>, &'a str)> {
        let found = self.source.find(key)?;
        match found.text {
            Some("") => None,
            Some(text) => Some((found.name, text)),
            None => {
                self.errors.push(FieldError::other(found.name, "is not valid UTF-8"));
                None
            }
        }
    }

    /// Whether `key` is set (to anything, even an invalid value).
    pub fn is_set(&self, key: &str) -> bool {
        self.source.find(key).is_some_and(|f| f.text != Some(""))
    }

    /// The name errors use for `key`, when it is set.
    pub fn name_of(&self, key: &str) -> Option<String> {
        self.source.find(key).map(|f| f.name.into_owned())
    }

    /// The value as text; `None` when unset or empty.
    pub fn text(&mut self, key: &str) -> Option<String> {
        self.entry(key).map(|(_, v)| v.to_string())
    }

    /// The value as text, or `default`.
    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.text(key).unwrap_or_else(|| default.to_string())
    }

    /// A value that may be a secret: errors never show it.
    pub fn secret(&mut self, key: &str) -> Option<SecretString> {
        self.entry(key).map(|(_, v)| SecretString::new(v.trim()))
    }

    /// The value parsed (after trimming), or `None` when unset; a bad value is recorded.
    pub fn optional<T>(&mut self, key: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let (name, text) = self.entry(key)?;
        let parsed = parse(text.trim());
        if parsed.is_none() {
            self.errors.push(FieldError::invalid(name, text, expected));
        }
        parsed
    }

    /// The value parsed, or `default` when unset or bad (a bad value is recorded).
    pub fn parsed<T>(&mut self, key: &str, default: T, expected: &str, parse: impl Fn(&str) -> Option<T>) -> T {
        self.optional(key, expected, parse).unwrap_or(default)
    }

    pub fn bool(&mut self, key: &str, default: bool) -> bool {
        self.parsed(key, default, EXPECTED_BOOL, parse_bool)
    }

    pub fn optional_bool(&mut self, key: &str) -> Option<bool> {
        self.optional(key, EXPECTED_BOOL, parse_bool)
    }

    pub fn duration(&mut self, key: &str, default: Duration) -> Duration {
        self.parsed(key, default, EXPECTED_DURATION, parse_duration)
    }

    pub fn optional_duration(&mut self, key: &str) -> Option<Duration> {
        self.optional(key, EXPECTED_DURATION, parse_duration)
    }

    pub fn int<T: std::str::FromStr>(&mut self, key: &str, default: T) -> T {
        self.parsed(key, default, "a whole number", |s| s.parse().ok())
    }

    /// The errors so far (for a caller that goes on reading another source).
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// `value` when every field was good, else every error.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() { Ok(value) } else { Err(self.errors) }
    }
}

pub const EXPECTED_BOOL: &str = "true or false (1, t, T, TRUE, True, 0, f, F, FALSE, False: Go's ParseBool)";
pub const EXPECTED_DURATION: &str = "a duration such as 10s, 1m30s or 500ms (a bare number is seconds)";

/// Exactly Go's `strconv.ParseBool` set, which Bank-Vaults reads booleans with. Anything else
/// (`yes`, `on`, `tRUE`) is an error: Bank-Vaults reads those as false, so accepting them would
/// make the same manifest mean something else here (`vault-skip-verify: "yes"` turning TLS
/// verification off under ours only).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `10s`, `1m30s`, `500ms`, `1h`; a bare number is seconds (Vault's `ParseDurationSecond`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).ok()?,
    };
    // Durations are added to clocks: a value near u64::MAX seconds would overflow (a panic).
    (d <= MAX_DURATION).then_some(d)
}

/// The longest duration any setting or annotation may hold (100 years).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, saturating at 100 years from now instead of overflowing.
pub fn instant_after(d: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(d).or_else(|| now.checked_add(MAX_DURATION)).unwrap_or(now)
}

/// Errors as one line: `a; b; c`.
pub fn join<E: fmt::Display>(errors: &[E]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// For the `--help` tests of both programs: (name, value) of each default a help text prints for
/// one of `names`: `NAME [VALUE]`, `NAME [default: VALUE]`, or `[default: VALUE]` in the entry of a
/// line that starts with `NAME`. Only a name's first default counts, and prose ("none", "the pod's
/// ServiceAccount") or a placeholder (`$HOME/…`) is not a value.
pub fn printed_defaults<'a>(help: &str, names: &[&'a str]) -> Vec<(&'a str, String)> {
    let name_of = |token: &str| names.iter().find(|n| **n == token.trim_end_matches(',')).copied();
    // The help with its whitespace collapsed, and where each entry (a line starting with a name) begins.
    let (mut text, mut entries) = (String::new(), Vec::new());
    for line in help.lines() {
        let mut tokens = line.split_whitespace().peekable();
        if line.starts_with("  ")
            && let Some(name) = tokens.peek().and_then(|t| name_of(t))
        {
            entries.push((text.len(), name));
        }
        for token in tokens {
            text.push_str(token);
            // `a, b` lists become `a,b`: one value.
            if !token.ends_with(',') {
                text.push(' ');
            }
        }
    }
    let (mut out, mut seen) = (Vec::new(), std::collections::HashSet::new());
    let mut at = 0;
    while let Some(open) = text[at..].find('[').map(|i| at + i) {
        let close = text[open..].find(']').map_or(text.len(), |i| open + i);
        let inside = &text[open + 1..close];
        let before = text[..open].trim_end();
        let named = before.rsplit([' ', ',']).next().and_then(name_of);
        let (name, value) = match inside.strip_prefix("default: ") {
            Some(value) => (named.or_else(|| entries.iter().rev().find(|(start, _)| *start <= open).map(|(_, n)| *n)), value),
            None => (named, inside),
        };
        let value = value.split(';').next().unwrap_or("").split(": ").next().unwrap_or("");
        // Only a name's first default counts: a later one is for one use of a shared variable
        // (the webhook's VAULT_ROLE is the pod's ServiceAccount for pods, `default` for objects).
        if let Some(name) = name
            && seen.insert(name)
            && !value.is_empty()
            && value != "none"
            && !value.contains([' ', '\'', '$'])
        {
            out.push((name, value.to_string()));
        }
        at = close.min(text.len() - 1) + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_gos_parse_bool_set_exactly() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["yes", "no", "on", "off", "y", "n", "tRUE", "Yes", "", " true", "2"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_error_is_collected_in_one_shape() {
        let source = [("A", "maybe"), ("B", "soon"), ("C", "12"), ("D", "")];
        let mut r = Reader::new(&source[..]);
        assert!(r.bool("A", true));
        assert_eq!(r.duration("B", Duration::ZERO), Duration::ZERO);
        assert_eq!(r.int::<u8>("C", 0), 12);
        assert_eq!(r.text("D"), None, "empty is unset");
        assert_eq!(r.secret("B").map(|s| s.expose().to_string()).as_deref(), Some("soon"));
        let errors = r.finish(()).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [format!("A=\"maybe\" is not valid: expected {EXPECTED_BOOL}"), format!("B=\"soon\" is not valid: expected {EXPECTED_DURATION}")]
        );
    }

    #[test]
    fn secrets_are_never_shown() {
        let e = FieldError { name: "VAULT_TOKEN".into(), problem: Problem::Invalid { value: None, expected: "a token".into() } };
        assert_eq!(e.to_string(), "VAULT_TOKEN is not valid: expected a token");
    }
}
