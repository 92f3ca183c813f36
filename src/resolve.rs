//! Resolution in three steps:
//! 1. [`plan`]: parse every variable's value (pure); all syntax errors are reported together.
//! 2. [`fetch`]: one request per distinct path+version (or write+body), many at once
//!    ([`Client::in_flight`]), plus transit ciphertexts decrypted in batches.
//! 3. [`render`]: each variable's final value from the fetched data (pure). All failures are
//!    reported together, each with the variable's name and the reference, never a value.

use crate::SecretString;
use crate::client::{Client, ClientError, Secret};
use crate::config::{self, Config, Env, FromPath, Transit};
use crate::reference::{self, Fetch, Key, Piece, Reference, ReferenceError};
use crate::template::{self, TemplateError};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// What has to be resolved: the variables that hold references and what they need from Vault.
#[derive(Debug, Default)]
pub struct Plan {
    pub vars: Vec<(String, reference::Value)>,
    pub fetches: BTreeSet<Fetch>,
    pub ciphertexts: BTreeSet<String>,
    pub from_path: Vec<FromPath>,
    pub login: bool,
}

impl Plan {
    /// False when nothing needs Vault: then vault-env must not contact it at all.
    pub fn needs_vault(&self) -> bool {
        !self.vars.is_empty() || !self.from_path.is_empty() || self.login
    }
}

/// Why one variable could not be resolved.
#[derive(Debug, Clone)]
pub enum Cause {
    Syntax(ReferenceError),
    NoTransitKey,
    PathNotFound,
    Deleted,
    KeyNotFound {
        key: String,
        available: String,
    },
    Template(TemplateError),
    NotText(String),
    Vault(ClientError),
    Transit(String),
    BadName(String),
    RefusedName(String),
    /// The values rendered so far already exceed this many bytes ([`render_bounded`]).
    TooLarge(usize),
}

impl Cause {
    /// What `VAULT_IGNORE_MISSING_SECRETS` turns into a warning: a missing path, version or key and a
    /// failed transit decryption. Never syntax, permission or connection errors.
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            Cause::PathNotFound | Cause::Deleted | Cause::KeyNotFound { .. } | Cause::Transit(_) | Cause::Template(TemplateError::KeyNotFound { .. })
        )
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Syntax(e) => write!(f, "{e}"),
            Cause::NoTransitKey => write!(f, "an encrypted value needs {} (the transit key name)", config::VAULT_TRANSIT_KEY_ID),
            Cause::PathNotFound => f.write_str("path not found"),
            Cause::Deleted => f.write_str("this secret version is deleted or destroyed"),
            Cause::KeyNotFound { key, available } => write!(f, "key {key:?} not found (keys: {available})"),
            Cause::Template(e) => write!(f, "{e}"),
            Cause::NotText(why) => f.write_str(why),
            Cause::Vault(e) => write!(f, "{e}"),
            Cause::Transit(e) => write!(f, "transit decryption failed: {e}"),
            Cause::BadName(name) => write!(f, "key {name:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            Cause::TooLarge(limit) => write!(f, "the resolved values would exceed {limit} bytes in all (a Kubernetes object holds at most 1 MiB)"),
            Cause::RefusedName(name) => write!(
                f,
                "key {name:?} is refused: loader, shell, interpreter, proxy, git and TLS-trust variables (LD_*, BASH_ENV, NODE_OPTIONS, PYTHON*, http_proxy, GIT_*, SSL_CERT_FILE, …) are not taken from Vault"
            ),
        }
    }
}

/// A variable that could not be resolved: name, reference (safe form) and cause.
#[derive(Debug, Clone)]
pub struct VarError {
    pub var: String,
    pub reference: Option<String>,
    pub cause: Cause,
}

impl fmt::Display for VarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Some(r) => write!(f, "{}: {r}: {}", self.var, self.cause),
            None => write!(f, "{}: {}", self.var, self.cause),
        }
    }
}

/// A secret that came with a lease (dynamic credentials), for renewal and revocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub path: String,
    pub lease_id: String,
    pub duration: u64,
    pub renewable: bool,
    /// When Vault's answer arrived: the lease's clock starts then, not when the last of many
    /// reads (or a restart's revocations) finished.
    pub granted_at: std::time::Instant,
}

/// The outcome: values for the child's environment.
#[derive(Debug, Default)]
pub struct Resolved {
    pub values: HashMap<String, SecretString>,
    /// Variables left out (missing secrets with `VAULT_IGNORE_MISSING_SECRETS`).
    pub dropped: BTreeSet<String>,
    /// `VAULT_ENV_FROM_PATH` variables, in order.
    pub from_path: Vec<(String, SecretString)>,
    pub leases: Vec<Lease>,
}

// === 1. plan ===

/// A reference as it may be shown in an error: whole references up to their key; inline values
/// are not shown at all (the text around a reference may itself be a secret).
fn shown_raw(value: &str) -> Option<String> {
    if !(value.starts_with(reference::READ_PREFIX) || value.starts_with(reference::WRITE_PREFIX)) {
        return None;
    }
    let mut parts = value.splitn(3, '#');
    let head: Vec<&str> = parts.by_ref().take(2).collect();
    let mut shown: String = head.join("#").chars().take(120).collect();
    if parts.next().is_some() {
        shown.push_str("#…");
    }
    Some(shown)
}

pub fn plan(env: &Env, config: &Config) -> Result<Plan, Vec<VarError>> {
    let values = env.vars().iter().filter_map(|(name, value)| Some((name.to_str()?, value.to_str()?))).filter(|(name, _)| !config::is_setting(name));
    let mut plan = plan_values(values, config.transit.key_id.is_some())?;
    plan.from_path = config.from_path.clone();
    plan.login = config.auth.login_requested;
    for fp in &plan.from_path {
        plan.fetches.insert(Fetch::Read { path: fp.path.clone(), version: fp.version });
    }
    Ok(plan)
}

/// The plan for named values (environment variables, or the webhook's object keys): values
/// that hold no reference are left out. `has_transit_key` says whether encrypted values can be
/// decrypted.
pub fn plan_values<'a>(values: impl IntoIterator<Item = (&'a str, &'a str)>, has_transit_key: bool) -> Result<Plan, Vec<VarError>> {
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    for (name, value) in values {
        if !reference::looks_like_reference(value) {
            continue;
        }
        let parsed = match reference::parse_value(value) {
            Ok(reference::Value::Plain) => continue,
            Ok(v) => v,
            Err(e) => {
                errors.push(VarError { var: name.into(), reference: shown_raw(value), cause: Cause::Syntax(e) });
                continue;
            }
        };
        for r in parsed.references() {
            match r {
                Reference::Transit { ciphertext } => {
                    if !has_transit_key {
                        errors.push(VarError { var: name.into(), reference: Some(r.to_string()), cause: Cause::NoTransitKey });
                    }
                    plan.ciphertexts.insert(ciphertext.clone());
                }
                other => {
                    plan.fetches.extend(other.fetch());
                }
            }
        }
        plan.vars.push((name.to_string(), parsed));
    }
    if errors.is_empty() { Ok(plan) } else { Err(errors) }
}

// === 2. fetch ===

/// Everything fetched from Vault, keyed by what was asked.
#[derive(Default)]
pub struct Fetched {
    /// Sorted by request: a map keeps room for twice its entries.
    secrets: Vec<(Fetch, Answer)>,
    plaintexts: HashMap<String, Result<SecretString, Cause>>,
}

/// One answer, and when it arrived. Boxed: an unboxed answer was 300 bytes, one per request (a
/// third of a daemon's peak heap with 1,000 certificates went to them, in a map that kept room for
/// twice as many, and to a second map of the times).
struct Answer {
    result: Box<Result<Secret, Cause>>,
    /// The values of the keys in use, taken out of the answer when it had them all ([`keep_only`]).
    kept: Option<Vec<(String, Value)>>,
    at: std::time::Instant,
}

impl Fetched {
    /// Where `f`'s answer is (`Ok`), or would go (`Err`).
    fn position(&self, f: &Fetch) -> Result<usize, usize> {
        self.secrets.binary_search_by(|(k, _)| k.cmp(f))
    }

    fn get(&self, f: &Fetch) -> Option<&Answer> {
        self.position(f).ok().map(|i| &self.secrets[i].1)
    }

    /// Keeps an answer that arrived `at`; with `keys`, only their values ([`keep_only`]).
    fn insert(&mut self, f: Fetch, mut result: Result<Secret, Cause>, at: std::time::Instant, keys: Option<&[&str]>) {
        let kept = match (&mut result, keys) {
            (Ok(secret), Some(keys)) => keep_only(secret, keys),
            _ => None,
        };
        // Answers arrive about in the requests' order: each goes in at or near the end.
        let answer = Answer { result: Box::new(result), kept, at };
        match self.position(&f) {
            Ok(i) => self.secrets[i].1 = answer,
            Err(i) => self.secrets.insert(i, (f, answer)),
        }
    }
}

/// One request of a fetch, and what it gives.
enum Work {
    Read(Fetch),
    Decrypt { path: String, batch: Vec<String> },
}

enum Done {
    Read(Fetch, Result<Secret, Cause>, std::time::Instant),
    Decrypt(Vec<(String, Result<SecretString, Cause>)>),
}

/// Every read, write and transit batch of `plan`, at most [`Client::in_flight`] at once (16, or 4
/// to a Vault on this host).
/// Tasks are spawned only as others finish (and are collected at once), so 1,000 references
/// never hold 1,000 request futures in memory.
pub async fn fetch(client: &Client, plan: &Plan, transit: &Transit) -> Fetched {
    let mut work: Vec<Work> = plan.fetches.iter().cloned().map(Work::Read).collect();
    if let Some(key) = &transit.key_id {
        let all: Vec<String> = plan.ciphertexts.iter().cloned().collect();
        let path = format!("{}/decrypt/{key}", transit.mount);
        work.extend(all.chunks(transit.batch_size.max(1)).map(|batch| Work::Decrypt { path: path.clone(), batch: batch.to_vec() }));
    }
    let needed = needed_keys(plan);
    // Sized once: growing moves every answer to a list twice the size, both held at once.
    let mut fetched = Fetched { secrets: Vec::with_capacity(plan.fetches.len()), ..Fetched::default() };
    let mut collect = |done: Done| match done {
        Done::Read(f, result, at) => {
            let keys = needed.get(&f).and_then(Option::as_deref);
            fetched.insert(f, result, at, keys);
        }
        Done::Decrypt(pairs) => fetched.plaintexts.extend(pairs),
    };
    let mut running = tokio::task::JoinSet::new();
    for item in work {
        while running.len() >= client.in_flight() {
            if let Some(Ok(done)) = running.join_next().await {
                collect(done);
            }
        }
        let client = client.clone();
        running.spawn(async move {
            match item {
                Work::Read(f) => {
                    let result = fetch_one(&client, &f).await;
                    Done::Read(f, result, std::time::Instant::now())
                }
                Work::Decrypt { path, batch } => Done::Decrypt(decrypt_batch(&client, &path, batch).await),
            }
        });
        // Let this request connect and be sent before the next one is started: otherwise every
        // connection is opened first and the first request leaves only after the last connect,
        // with Vault idle meanwhile. Sent one by one, the first answers arrive while later
        // requests go out, and those can reuse connections the first ones freed.
        tokio::task::yield_now().await;
    }
    while let Some(joined) = running.join_next().await {
        if let Ok(done) = joined {
            collect(done);
        }
    }
    fetched
}

/// For each request of the plan, the keys of its answer that something uses; `None`: the whole
/// answer (a template or `VAULT_ENV_FROM_PATH` reads it all). Keyed by the plan's own requests,
/// and the keys a list (most answers have one or two in use): it is held while 1,000 answers arrive.
fn needed_keys(plan: &Plan) -> HashMap<&Fetch, Option<Vec<&str>>> {
    let mut needed: HashMap<&Fetch, Option<Vec<&str>>> = HashMap::with_capacity(plan.fetches.len());
    for r in plan.vars.iter().flat_map(|(_, value)| value.references()) {
        let (Some(f), Some(key)) = (r.fetch(), r.key()) else { continue };
        let Some(f) = plan.fetches.get(&f) else { continue };
        let entry = needed.entry(f).or_insert_with(|| Some(Vec::new()));
        match (entry, key) {
            (Some(keys), Key::Name(k)) => {
                if !keys.contains(&k.as_str()) {
                    keys.push(k.as_str());
                }
            }
            (entry, _) => *entry = None,
        }
    }
    for fp in &plan.from_path {
        if let Some(f) = plan.fetches.get(&Fetch::Read { path: fp.path.clone(), version: fp.version }) {
            needed.insert(f, None);
        }
    }
    needed
}

/// Takes the values of `keys` out of an answer that has them all and drops the rest of its data
/// (a certificate's private key and CA chain when only its serial number is wanted), so that
/// 1,000 answers are not all held whole until the last arrives: a list of the values in use is a
/// tenth of the smallest map holding them. With every wanted key there, no error lists an
/// answer's keys; an answer that lacks one is kept whole (`None`), for the error that does.
fn keep_only(secret: &mut Secret, keys: &[&str]) -> Option<Vec<(String, Value)>> {
    let Some(Value::Object(map)) = secret.data.as_mut() else { return None };
    let kv2 = matches!((map.get("data"), map.get("metadata")), (Some(Value::Object(_)), Some(Value::Object(_))));
    let data = match map.get_mut("data") {
        Some(Value::Object(inner)) if kv2 => inner,
        _ if kv2 => return None,
        _ => map,
    };
    if !keys.iter().all(|k| data.contains_key(*k)) {
        return None;
    }
    let kept = keys.iter().filter_map(|k| data.remove_entry(*k)).collect();
    secret.data = None;
    Some(kept)
}

async fn fetch_one(client: &Client, f: &Fetch) -> Result<Secret, Cause> {
    let result = match f {
        Fetch::Read { path, version } => client.read(path, *version).await,
        Fetch::Write { path, body } => {
            // The body was validated as a JSON object when the reference was parsed.
            let body: Value = serde_json::from_str(body).unwrap_or_else(|_| json!({}));
            client.write(path, &body).await
        }
    };
    match result {
        Ok(Some(secret)) => {
            match f {
                Fetch::Read { .. } => {
                    for w in secret.warnings.iter().flatten() {
                        tracing::warn!(request = %f, "Vault warning: {w}");
                    }
                }
                // Vault's text may quote the body, which may carry plaintext.
                Fetch::Write { .. } if secret.warnings.as_ref().is_some_and(|w| !w.is_empty()) => {
                    tracing::warn!(request = %f, "Vault answered the write with warnings (not shown: they may quote the body)");
                }
                Fetch::Write { .. } => {}
            }
            tracing::debug!(request = %f, lease_duration = secret.lease_duration, renewable = secret.renewable, "fetched");
            Ok(secret)
        }
        Ok(None) => match f {
            Fetch::Read { .. } => Err(Cause::PathNotFound),
            Fetch::Write { .. } => Ok(Secret::default()),
        },
        Err(e) if e.is_not_found() => Err(Cause::PathNotFound),
        // Vault's error text may quote the write body ("invalid duration \"…\""): status only.
        Err(e) if matches!(f, Fetch::Write { .. }) => Err(Cause::Vault(e.without_detail())),
        Err(e) => Err(Cause::Vault(e)),
    }
}

async fn decrypt_batch(client: &Client, path: &str, batch: Vec<String>) -> Vec<(String, Result<SecretString, Cause>)> {
    let items: Vec<Value> = batch.iter().map(|c| json!({ "ciphertext": c })).collect();
    let results = match client.write(path, &json!({ "batch_input": items })).await {
        Ok(Some(s)) => s.data_map().and_then(|d| d.get("batch_results")).and_then(Value::as_array).cloned(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(path, error = %e, "batch decryption failed; decrypting one by one");
            None
        }
    };
    let mut out = Vec::with_capacity(batch.len());
    for (i, ciphertext) in batch.into_iter().enumerate() {
        let item = results.as_ref().and_then(|r| r.get(i)).cloned();
        let result = match item {
            Some(item) => plaintext_of(&item),
            None => match client.write(path, &json!({ "ciphertext": ciphertext })).await {
                Ok(Some(s)) => plaintext_of(s.data.as_ref().unwrap_or(&Value::Null)),
                Ok(None) => Err(Cause::Transit("empty answer".into())),
                Err(e) if e.is_denied() => Err(Cause::Vault(e)),
                Err(e) => Err(Cause::Transit(e.to_string())),
            },
        };
        out.push((ciphertext, result));
    }
    out
}

fn plaintext_of(item: &Value) -> Result<SecretString, Cause> {
    if let Some(err) = item.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return Err(Cause::Transit(err.to_string()));
    }
    let b64 = item.get("plaintext").and_then(Value::as_str).ok_or_else(|| Cause::Transit("no plaintext in the answer".into()))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| Cause::Transit(format!("plaintext is not base64: {e}")))?;
    String::from_utf8(raw).map(SecretString::from).map_err(|_| Cause::NotText("decrypted value is not UTF-8 text".into()))
}

/// [`fetch`] then [`render`], with the settings from `config`.
pub async fn fetch_and_render(client: &Client, plan: &Plan, config: &Config) -> Result<Resolved, Vec<VarError>> {
    let fetched = fetch(client, plan, &config.transit).await;
    render(plan, &fetched, config.ignore_missing)
}

// === 3. render ===

/// The key/value map of a response: KV v2's inner `data` when the answer has KV v2's shape
/// (`data` and a `metadata` map), else the top-level `data` (KV v1, database, PKI, …).
/// Unlike Bank-Vaults, a KV v1 secret with a field named `data` is not mistaken for KV v2.
fn secret_data(secret: &Secret) -> Result<&Map<String, Value>, Cause> {
    let map = secret.data_map().ok_or(Cause::PathNotFound)?;
    match (map.get("data"), map.get("metadata")) {
        (Some(Value::Object(inner)), Some(Value::Object(_))) => Ok(inner),
        (Some(Value::Null), Some(Value::Object(_))) => Err(Cause::Deleted),
        _ => Ok(map),
    }
}

fn lookup(r: &Reference, fetched: &Fetched) -> Result<String, Cause> {
    if let Reference::Transit { ciphertext } = r {
        return match fetched.plaintexts.get(ciphertext) {
            Some(Ok(v)) => Ok(v.expose().to_string()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(Cause::NoTransitKey),
        };
    }
    let f = r.fetch().ok_or(Cause::PathNotFound)?;
    let Some(answer) = fetched.get(&f) else {
        return Err(Cause::Vault(ClientError::Decode("the request was not made".into())));
    };
    let secret = match &*answer.result {
        Ok(s) => s,
        Err(e) => return Err(e.clone()),
    };
    if let (Some(kept), Some(Key::Name(k))) = (&answer.kept, r.key()) {
        return match kept.iter().find(|(name, _)| name == k) {
            Some((_, v)) => template::to_text(v, &format!("key {k:?}")).map_err(|e| Cause::NotText(e.to_string())),
            None => Err(Cause::KeyNotFound { key: k.clone(), available: kept.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ") }),
        };
    }
    let data = secret_data(secret)?;
    match r.key() {
        Some(Key::Name(k)) => match data.get(k) {
            Some(v) => template::to_text(v, &format!("key {k:?}")).map_err(|e| Cause::NotText(e.to_string())),
            None => Err(Cause::KeyNotFound { key: k.clone(), available: template::key_list(data) }),
        },
        Some(Key::Template { template, .. }) => template.render(data).map_err(Cause::Template),
        None => Err(Cause::PathNotFound),
    }
}

fn render_value(value: &reference::Value, fetched: &Fetched) -> Result<String, (String, Cause)> {
    let pieces = match value {
        reference::Value::Plain => return Ok(String::new()),
        reference::Value::Whole(r) => return lookup(r, fetched).map_err(|c| (r.to_string(), c)),
        reference::Value::Inline(pieces) => pieces,
    };
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => out.push_str(&lookup(r, fetched).map_err(|c| (r.to_string(), c))?),
        }
    }
    Ok(out)
}

/// A name `VAULT_ENV_FROM_PATH` may set: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Variables that make the dynamic loader, a shell, an interpreter or a common tool run code, load
/// it from elsewhere, send traffic through another host, or trust other certificates. Whoever can
/// write the Vault path must not get to set them (`git` runs `core.fsmonitor` from
/// `GIT_CONFIG_*`; `curl` and most HTTP clients send credentials through `http_proxy`); the pod
/// can still set them itself. Compared case-insensitively (`http_proxy` is read in lower case).
const REFUSED_FROM_PATH: [&str; 46] = [
    "LD_",
    "DYLD_",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "MALLOC_",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "PATH",
    "HOME",
    "XDG_",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_EXTRA_CA_CERTS",
    "PYTHON",
    "PERL",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "DOTNET_",
    "CORECLR_",
    "COR_",
    "LUA_INIT",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "GIT_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
    "SSL_CERT_",
    "SSLKEYLOGFILE",
    "OPENSSL_",
    "REQUESTS_CA_BUNDLE",
];

/// Whether `name` is one of [`REFUSED_FROM_PATH`], in any case (entries ending in `_`, and
/// `PYTHON`, `PERL` and `LUA_INIT`, are prefixes).
fn refused_from_path(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    REFUSED_FROM_PATH.iter().any(|r| if r.ends_with('_') || ["PYTHON", "PERL", "LUA_INIT"].contains(r) { upper.starts_with(r) } else { upper == *r })
}

pub fn render(plan: &Plan, fetched: &Fetched, ignore_missing: bool) -> Result<Resolved, Vec<VarError>> {
    render_bounded(plan, fetched, ignore_missing, usize::MAX)
}

/// [`render`], stopping with [`Cause::TooLarge`] as soon as the values rendered so far add up to
/// more than `budget` bytes: one template is capped at [`template::MAX_OUTPUT`], but an object
/// may hold any number of them over one path (the webhook's budget per object).
pub fn render_bounded(plan: &Plan, fetched: &Fetched, ignore_missing: bool, budget: usize) -> Result<Resolved, Vec<VarError>> {
    let mut total = 0usize;
    let mut resolved = Resolved::default();
    let mut errors = Vec::new();
    let mut fail = |var: &str, reference: String, cause: Cause, resolved: &mut Resolved| {
        if ignore_missing && cause.is_missing() {
            tracing::warn!("{var}: {reference}: {cause}; not set ({} is on)", config::VAULT_IGNORE_MISSING_SECRETS);
            resolved.dropped.insert(var.to_string());
        } else {
            errors.push(VarError { var: var.to_string(), reference: Some(reference), cause });
        }
    };
    for (name, value) in &plan.vars {
        match render_value(value, fetched) {
            Ok(v) if v.contains('\0') => fail(name, "value".into(), Cause::NotText("the value holds a NUL byte".into()), &mut resolved),
            Ok(v) => {
                total = total.saturating_add(v.len());
                if total > budget {
                    fail(name, "value".into(), Cause::TooLarge(budget), &mut resolved);
                    break;
                }
                resolved.values.insert(name.clone(), SecretString::new(v));
            }
            Err((reference, cause)) => fail(name, reference, cause, &mut resolved),
        }
    }
    for fp in &plan.from_path {
        let f = Fetch::Read { path: fp.path.clone(), version: fp.version };
        let shown = match fp.version {
            Some(v) => format!("{}#{v}", fp.path),
            None => fp.path.clone(),
        };
        let data = match fetched.get(&f).map(|a| a.result.as_ref().as_ref().map_err(Cause::clone).and_then(secret_data)) {
            Some(Ok(d)) => d,
            Some(Err(cause)) => {
                fail(config::VAULT_ENV_FROM_PATH, shown, cause, &mut resolved);
                continue;
            }
            None => continue,
        };
        for (k, v) in data {
            if !valid_env_name(k) {
                fail(config::VAULT_ENV_FROM_PATH, shown.clone(), Cause::BadName(k.clone()), &mut resolved);
                continue;
            }
            if refused_from_path(k) {
                fail(config::VAULT_ENV_FROM_PATH, shown.clone(), Cause::RefusedName(k.clone()), &mut resolved);
                continue;
            }
            match template::to_text(v, &format!("key {k:?}")) {
                Ok(text) if !text.contains('\0') => resolved.from_path.push((k.clone(), SecretString::new(text))),
                Ok(_) => fail(config::VAULT_ENV_FROM_PATH, shown.clone(), Cause::NotText(format!("key {k:?} holds a NUL byte")), &mut resolved),
                Err(e) => fail(config::VAULT_ENV_FROM_PATH, shown.clone(), Cause::NotText(e.to_string()), &mut resolved),
            }
        }
    }
    for (f, answer) in &fetched.secrets {
        if let (Ok(s), Fetch::Read { path, .. } | Fetch::Write { path, .. }) = (&*answer.result, f)
            && !s.lease_id.is_empty()
        {
            let granted_at = answer.at;
            resolved.leases.push(Lease {
                path: path.clone(),
                lease_id: s.lease_id.clone(),
                duration: s.lease_duration,
                renewable: s.renewable,
                granted_at,
            });
        }
    }
    if errors.is_empty() { Ok(resolved) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(json: &str) -> Secret {
        serde_json::from_str(json).unwrap()
    }

    fn fetched(entries: &[(&str, Result<&str, Cause>)]) -> Fetched {
        let mut f = Fetched::default();
        for (path, result) in entries {
            f.insert(Fetch::Read { path: (*path).into(), version: None }, result.clone().map(secret), std::time::Instant::now(), None);
        }
        f
    }

    fn plan_of(vars: &[(&str, &str)]) -> Plan {
        let env: Env = vars.iter().map(|(k, v)| (*k, *v)).collect();
        plan(&env, &Config::from_env(&Env::default()).unwrap()).unwrap()
    }

    /// Only the keys something uses keep their values; a template or a missing key keeps the
    /// whole answer (the missing key's error still lists every key).
    #[test]
    fn answers_keep_only_the_values_in_use() {
        let plan = plan_of(&[
            ("SERIAL", r#">>vault:pki/issue/svc#serial_number#{"common_name":"a.svc.local"}"#),
            ("USER", "vault:secret/data/db#user"),
            ("ALL", "vault:secret/data/t#${.a}${.b}"),
            ("TYPO", "vault:secret/data/x#usr"),
        ]);
        let needed = needed_keys(&plan);
        let pki = r#"{"lease_id":"pki/issue/svc/1","data":{"serial_number":"01:02","certificate":"C","private_key":"K","ca_chain":["A"]}}"#;
        let mut cert = secret(pki);
        let write = Fetch::Write { path: "pki/issue/svc".into(), body: r#"{"common_name":"a.svc.local"}"#.into() };
        let kept = keep_only(&mut cert, needed[&write].as_ref().unwrap());
        assert_eq!((kept, cert.data), (Some(vec![("serial_number".to_string(), json!("01:02"))]), None));
        assert_eq!(cert.lease_id, "pki/issue/svc/1");

        let kv2 = r#"{"data":{"data":{"user":"u","password":"p"},"metadata":{"version":3}}}"#;
        let mut answer = secret(kv2);
        let kept = keep_only(&mut answer, needed[&Fetch::Read { path: "secret/data/db".into(), version: None }].as_ref().unwrap());
        assert_eq!((kept, answer.data), (Some(vec![("user".to_string(), json!("u"))]), None));

        assert_eq!(needed[&Fetch::Read { path: "secret/data/t".into(), version: None }], None, "a template reads the whole answer");
        let mut typo = secret(r#"{"data":{"user":"u","password":"p"}}"#);
        assert_eq!(keep_only(&mut typo, needed[&Fetch::Read { path: "secret/data/x".into(), version: None }].as_ref().unwrap()), None);
        assert_eq!(typo.data.unwrap(), json!({"user":"u","password":"p"}), "kept whole for the error");

        // As the fetch keeps them: each variable gets its value, the typo its error with the keys.
        let mut fetched = Fetched::default();
        let now = std::time::Instant::now();
        for (f, answer) in [
            (write, pki),
            (Fetch::Read { path: "secret/data/db".into(), version: None }, kv2),
            (Fetch::Read { path: "secret/data/t".into(), version: None }, r#"{"data":{"a":"1","b":"2"}}"#),
            (Fetch::Read { path: "secret/data/x".into(), version: None }, r#"{"data":{"user":"u","password":"p"}}"#),
        ] {
            let keys = needed.get(&f).and_then(Option::as_deref);
            fetched.insert(f, Ok(secret(answer)), now, keys);
        }
        let errors = render(&plan, &fetched, false).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].to_string(), r#"TYPO: vault:secret/data/x#usr: key "usr" not found (keys: password, user)"#);
        let mut plan = plan;
        plan.vars.retain(|(name, _)| name != "TYPO");
        let resolved = render(&plan, &fetched, false).unwrap();
        let value = |name: &str| resolved.values[name].expose().to_string();
        assert_eq!((value("SERIAL"), value("USER"), value("ALL")), ("01:02".into(), "u".into(), "12".into()));
    }

    /// One small object held many templates over one path, each under the per-template cap, and
    /// their sum was unbounded (120 keys: a 160 MB answer). Rendering stops at the budget.
    #[test]
    fn rendering_stops_at_the_budget() {
        let template = "vault:secret/data/x#${.a | replace \"a\" \"aaaaaaaaaa\" | replace \"a\" \"aaaaaaaaaa\" | replace \"a\" \"aaaaaaaaaa\"}";
        let vars: Vec<(String, &str)> = (0..120).map(|i| (format!("K{i:03}"), template)).collect();
        let plan = plan_values(vars.iter().map(|(k, v)| (k.as_str(), *v)), false).unwrap();
        let f = fetched(&[("secret/data/x", Ok(r#"{"data":{"a":"aaaaaaaaaa"}}"#))]);
        let all = render(&plan, &f, false).unwrap();
        assert_eq!(all.values.len(), 120);
        let errors = render_bounded(&plan, &f, false, 100_000).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "K010: value: the resolved values would exceed 100000 bytes in all (a Kubernetes object holds at most 1 MiB)"
        );
    }

    #[test]
    fn plan_dedupes_paths_and_skips_settings() {
        let p = plan_of(&[
            ("A", "vault:secret/data/x#a"),
            ("B", "vault:secret/data/x#b"),
            ("C", "url://${vault:secret/data/x#a}:${vault:db/creds/r#password}"),
            ("VAULT_ROLE", "vault:not/a#reference"),
            ("PLAIN", "hello"),
        ]);
        assert_eq!(p.vars.len(), 3);
        assert_eq!(p.fetches.len(), 2);
        assert!(p.needs_vault());
        assert!(!plan_of(&[("PLAIN", "x"), ("VAULT_ADDR", "http://x")]).needs_vault());
    }

    #[test]
    fn plan_reports_all_syntax_errors() {
        let env: Env = [("A", "vault:secret/x"), ("B", "vault:v1:abc"), ("C", "x${vault:oops"), ("D", "vault:ok#k")].into_iter().collect();
        let errors = plan(&env, &Config::from_env(&Env::default()).unwrap()).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "A: vault:secret/x: malformed reference: expected vault:PATH#KEY",
                "B: vault:v1:abc…: an encrypted value needs VAULT_TRANSIT_KEY_ID (the transit key name)",
                "C: malformed reference: \"${vault:\" without its closing \"}\"",
            ]
        );
    }

    /// A lease's clock starts when Vault answered, not when rendering (after the last of many
    /// reads) or a restart's revocations finished: 1,000 leases used to be renewed up to 0.89
    /// of their life because of that.
    #[test]
    fn leases_are_timed_from_vaults_answer() {
        let p = plan_of(&[("U", "vault:database/creds/app#username")]);
        let mut f = fetched(&[(
            "database/creds/app",
            Ok(r#"{"lease_id":"database/creds/app/x","lease_duration":60,"renewable":true,"data":{"username":"u"}}"#),
        )]);
        let answered = std::time::Instant::now() - std::time::Duration::from_secs(3);
        f.secrets[0].1.at = answered;
        let resolved = render(&p, &f, false).unwrap();
        assert_eq!(resolved.leases.len(), 1);
        assert_eq!(resolved.leases[0].granted_at, answered);
    }

    #[test]
    fn render_kv_shapes() {
        let f = fetched(&[
            ("v2", Ok(r#"{"data":{"data":{"k":"two"},"metadata":{"version":1}}}"#)),
            ("v1", Ok(r#"{"data":{"k":"one","n":5}}"#)),
            ("v1data", Ok(r#"{"data":{"data":"field named data","k":"x"}}"#)),
            ("deleted", Ok(r#"{"data":{"data":null,"metadata":{"deletion_time":"t"}}}"#)),
            ("gone", Err(Cause::PathNotFound)),
        ]);
        let p = plan_of(&[
            ("A", "vault:v2#k"),
            ("B", "vault:v1#k"),
            ("C", "vault:v1#n"),
            ("D", "vault:v1data#data"),
            ("E", "${vault:v1#k}-${vault:v2#k}"),
        ]);
        let r = render(&p, &f, false).unwrap();
        let get = |k: &str| r.values[k].expose().to_string();
        assert_eq!(
            (get("A"), get("B"), get("C"), get("D"), get("E")),
            ("two".into(), "one".into(), "5".into(), "field named data".into(), "one-two".into())
        );

        let errs = render(&plan_of(&[("X", "vault:deleted#k"), ("Y", "vault:gone#k"), ("Z", "vault:v1#nope")]), &f, false).unwrap_err();
        let mut text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        text.sort();
        assert_eq!(
            text,
            [
                "X: vault:deleted#k: this secret version is deleted or destroyed",
                "Y: vault:gone#k: path not found",
                "Z: vault:v1#nope: key \"nope\" not found (keys: k, n)",
            ]
        );
    }

    #[test]
    fn render_ignore_missing_drops_but_keeps_fatal_errors() {
        let f = fetched(&[
            ("gone", Err(Cause::PathNotFound)),
            ("denied", Err(Cause::Vault(ClientError::Status { status: 403, errors: vec!["permission denied".into()] }))),
            ("ok", Ok(r#"{"data":{"k":"v"}}"#)),
        ]);
        let p = plan_of(&[("A", "vault:gone#k"), ("B", "vault:ok#missing"), ("C", "vault:ok#k")]);
        let r = render(&p, &f, true).unwrap();
        assert_eq!(r.dropped.iter().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(r.values["C"].expose(), "v");
        let errs = render(&plan_of(&[("D", "vault:denied#k")]), &f, true).unwrap_err();
        assert_eq!(errs[0].to_string(), "D: vault:denied#k: permission denied (403)");
    }

    #[test]
    fn shown_raw_never_includes_bodies_or_inline_text() {
        assert_eq!(shown_raw("vault:a/b#k#3").as_deref(), Some("vault:a/b#k#…"));
        assert_eq!(shown_raw(">>vault:a#k#{\"plaintext\":\"x\"}").as_deref(), Some(">>vault:a#k#…"));
        assert_eq!(shown_raw("pass=hunter2 ${vault:a#b"), None);
    }
}
