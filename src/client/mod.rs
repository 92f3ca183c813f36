//! A thin Vault/OpenBao HTTP client: logical read/write of any path with the whole response
//! envelope (lease id, duration, renewable), logins, and token calls. No policy lives here.
//!
//! Why not vaultrs: its typed reads drop `lease_id` (jmgilman/vaultrs#144), it has no `sys/leases`,
//! no `VAULT_TLS_SERVER_NAME`, no retries, a non-`Clone` client, and it adds ~28 crates to a binary
//! that is copied into every pod. This module is the few hundred lines we actually need.
//!
//! Retries: connection errors, timeouts, 429 and 5xx are retried with jittered exponential backoff
//! (100 ms doubling, at most 2 s apart). Until `VAULT_CLIENT_TIMEOUT` has passed since the client
//! was made they are retried regardless of count (Vault may still be starting, e.g. behind a sidecar);
//! after that, `VAULT_MAX_RETRIES` times.

use crate::SecretString;
pub mod path;
mod tls;

use crate::config::{self, Config};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Vault at {addr}: {cause}")]
    Unreachable { addr: String, cause: String },
    #[error("{}", status_text(*status, errors))]
    Status { status: u16, errors: Vec<String> },
    #[error("unexpected answer from Vault: {0}")]
    Decode(String),
    #[error("{var}: {message}")]
    Setup { var: &'static str, message: String },
    /// A client limited to secrets ([`Client::secrets_only`]) was asked for another path.
    #[error("{path:?} is not read: {reason}")]
    Refused { path: String, reason: path::PathError },
}

fn status_text(status: u16, errors: &[String]) -> String {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error");
    let detail: Vec<String> = errors.iter().flat_map(|e| vault_error_items(e)).collect();
    match detail.as_slice() {
        [] => format!("{} ({status})", reason.to_lowercase()),
        _ => format!("{} ({status})", detail.join("; ")),
    }
}

/// Vault wraps several errors as "2 errors occurred:\n\t* first\n\t* second"; keep the items.
fn vault_error_items(text: &str) -> Vec<String> {
    let items: Vec<String> = text.lines().filter_map(|l| l.trim().strip_prefix("* ")).map(str::to_string).collect();
    if items.is_empty() { vec![text.split_whitespace().collect::<Vec<_>>().join(" ")] } else { items }
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The same error without Vault's own text (which may quote what was sent).
    pub fn without_detail(self) -> ClientError {
        match self {
            ClientError::Status { status, .. } => ClientError::Status { status, errors: Vec::new() },
            other => other,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_denied(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }
}

/// A Vault response envelope. `Debug` shows only key names: `data` holds secrets.
#[derive(Deserialize, Default, Clone)]
pub struct Secret {
    #[serde(default)]
    pub lease_id: String,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    #[serde(default)]
    pub auth: Option<Auth>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.data.as_ref().and_then(Value::as_object).map(crate::template::key_list);
        f.debug_struct("Secret")
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("data_keys", &keys)
            .field("auth", &self.auth)
            .finish()
    }
}

#[derive(Deserialize, Debug, Clone)]
pub struct Auth {
    pub client_token: SecretString,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub policies: Vec<String>,
}

impl Secret {
    pub fn data_map(&self) -> Option<&Map<String, Value>> {
        self.data.as_ref().and_then(Value::as_object)
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    addr: String,
    namespace: Option<String>,
    token: Option<SecretString>,
    max_retries: u32,
    patient_until: Instant,
    timeout: Duration,
    /// `read` and `write` reach secrets only ([`path::secret_path`]).
    secrets_only: bool,
    /// `VAULT_HEADERS`.
    headers: std::sync::Arc<Vec<(String, SecretString)>>,
    /// `VAULT_RATE_LIMIT`, shared by every clone of this client.
    limiter: Option<std::sync::Arc<RateLimiter>>,
    /// How many requests a fetch keeps in flight ([`in_flight`]).
    in_flight: usize,
}

/// Requests a fetch keeps in flight to a Vault on another host: its round trips overlap, each on
/// a connection of its own.
pub const IN_FLIGHT: usize = 16;
/// Requests a fetch keeps in flight to a Vault on this host (a loopback address, or a unix
/// socket: an agent or proxy beside the app, or a local server).
pub const IN_FLIGHT_ON_THIS_HOST: usize = 4;

/// How many requests a fetch keeps in flight to the Vault of `config`. A Vault on this host
/// answers a read in less time than a new connection costs it and vault-env (0.2 ms of its CPU
/// and 0.1 ms of ours on loopback, and a TLS handshake over HTTPS), and it shares this machine's
/// cores with vault-env: four requests at a time reuse the connections the first answers free
/// instead of opening one each, and a round trip there costs next to nothing. A Vault reached
/// through a proxy is taken to be elsewhere.
pub fn in_flight(config: &Config) -> usize {
    if config.unix_socket.is_some() || (config.proxy.is_none() && on_this_host(&config.addr)) { IN_FLIGHT_ON_THIS_HOST } else { IN_FLIGHT }
}

/// Whether the URL `addr` names this host: a loopback address or `localhost`.
fn on_this_host(addr: &str) -> bool {
    match url::Url::parse(addr).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A token bucket: `rate` requests a second, at most `burst` at once (Vault's client uses
/// golang.org/x/time/rate the same way).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: std::sync::Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter { rate, burst, state: std::sync::Mutex::new((burst, Instant::now())) }
    }

    /// How long to wait before the next request may go out (taking its token now).
    fn reserve(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = *state;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst) - 1.0;
        *state = (tokens, now);
        if tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-tokens / self.rate) }
    }

    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Client {
    pub fn new(config: &Config) -> Result<Client, ClientError> {
        // Loading the system's CA bundle costs milliseconds; a plain-HTTP Vault needs none of it.
        let https = config.addr.starts_with("https://") || config.proxy.as_deref().is_some_and(|p| p.starts_with("https://"));
        let tls = tls::tls_config(&config.tls, https).map_err(|e| ClientError::Setup { var: e.var, message: e.message })?;
        let redirects = if config.follow_redirects { reqwest::redirect::Policy::custom(same_origin_307) } else { reqwest::redirect::Policy::none() };
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(redirects)
            .user_agent(concat!("vault-env/", env!("CARGO_PKG_VERSION")));
        if let Some(socket) = &config.unix_socket {
            builder = builder.unix_socket(socket.as_path());
        }
        if let Some(proxy) = &config.proxy {
            let proxy =
                reqwest::Proxy::all(proxy.as_str()).map_err(|e| ClientError::Setup { var: config::VAULT_HTTP_PROXY, message: e.to_string() })?;
            builder = builder.proxy(proxy);
        } else {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| ClientError::Setup { var: config::VAULT_ADDR, message: e.to_string() })?;
        Ok(Client {
            http,
            addr: config.addr.clone(),
            namespace: config.namespace.clone(),
            token: None,
            max_retries: config.max_retries,
            patient_until: crate::config::reader::instant_after(config.timeout),
            timeout: config.timeout,
            secrets_only: false,
            headers: std::sync::Arc::new(config.headers.clone()),
            limiter: config.rate_limit.map(|(rate, burst)| std::sync::Arc::new(RateLimiter::new(rate, burst))),
            in_flight: in_flight(config),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How many requests a fetch keeps in flight ([`in_flight`]).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The same client without the start-up patience: failures are retried `VAULT_MAX_RETRIES`
    /// times only, so a caller with its own schedule (the lease keeper) hears about them in time.
    pub fn impatient(&self) -> Client {
        Client { patient_until: Instant::now(), ..self.clone() }
    }

    /// The same client that tries once: no retries, no start-up patience (revocations at exit).
    pub fn impatient_once(&self) -> Client {
        Client { patient_until: Instant::now(), max_retries: 0, ..self.clone() }
    }

    pub fn with_token(&self, token: SecretString) -> Client {
        Client { token: Some(token), ..self.clone() }
    }

    /// The same client whose `read` and `write` reach secrets only: a path that is not
    /// canonical, or that goes through `auth/`, `sys/`, `identity/` or `cubbyhole/` (under any
    /// namespace, this client's included), is refused before anything is sent, and so is one
    /// the URL parser would rewrite. The webhook reads objects' references with such a client,
    /// so that no spelling of a reference can return its own token, whatever the parser above
    /// lets through. Logins and the token calls below are not affected.
    pub fn secrets_only(&self) -> Client {
        Client { secrets_only: true, ..self.clone() }
    }

    /// `GET /v1/PATH[?version=N]`. `Ok(None)` when Vault answers 204.
    pub async fn read(&self, path: &str, version: Option<u64>) -> Result<Option<Secret>, ClientError> {
        let path = self.logical(path)?;
        let query: Vec<(&str, String)> = version.map(|v| ("version", v.to_string())).into_iter().collect();
        self.send(Method::GET, path, &query, None).await
    }

    /// `PUT /v1/PATH` with a JSON body.
    pub async fn write(&self, path: &str, body: &Value) -> Result<Option<Secret>, ClientError> {
        let path = self.logical(path)?;
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    /// The path `read`/`write` send: as given, or for a [`Client::secrets_only`] client the
    /// canonical secret path, checked against the URL that will actually be requested.
    fn logical<'a>(&self, path: &'a str) -> Result<&'a str, ClientError> {
        if !self.secrets_only {
            return Ok(path);
        }
        let refused = |reason| ClientError::Refused { path: path.to_string(), reason };
        let canonical = path::secret_path(self.namespace.as_deref(), path).map_err(refused)?;
        let sent = reqwest::Url::parse(&self.url(canonical)).map_err(|_| refused(path::PathError::Rewritten))?;
        if !sent.path().ends_with(&format!("/v1/{canonical}")) || sent.query().is_some() {
            return Err(refused(path::PathError::Rewritten));
        }
        Ok(canonical)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.addr, path.trim_start_matches('/'))
    }

    /// `POST /v1/auth/MOUNT/login`.
    /// `VAULT_CLIENT_TIMEOUT`: each request's bound (the cloud logins' metadata requests too).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn login(&self, mount: &str, body: &Value) -> Result<Auth, ClientError> {
        let secret = self.send(Method::POST, &format!("auth/{mount}/login"), &[], Some(body)).await?;
        secret.and_then(|s| s.auth).ok_or_else(|| ClientError::Decode("login answer has no auth section".into()))
    }

    pub async fn lookup_self(&self) -> Result<Option<Secret>, ClientError> {
        self.send(Method::GET, "auth/token/lookup-self", &[], None).await
    }

    pub async fn revoke_self(&self) -> Result<(), ClientError> {
        self.send(Method::POST, "auth/token/revoke-self", &[], None).await.map(|_| ())
    }

    /// `auth/token/renew-self`: the token's new TTL.
    pub async fn renew_self(&self, increment_secs: u64) -> Result<Auth, ClientError> {
        let body = serde_json::json!({ "increment": format!("{increment_secs}s") });
        let secret = self.send(Method::POST, "auth/token/renew-self", &[], Some(&body)).await?;
        secret.and_then(|s| s.auth).ok_or_else(|| ClientError::Decode("renew-self answer has no auth section".into()))
    }

    /// `sys/leases/renew`: the lease's new duration.
    pub async fn renew_lease(&self, lease_id: &str, increment_secs: u64) -> Result<Secret, ClientError> {
        let body = serde_json::json!({ "lease_id": lease_id, "increment": increment_secs });
        let secret = self.send(Method::PUT, "sys/leases/renew", &[], Some(&body)).await?;
        secret.ok_or_else(|| ClientError::Decode("lease renewal answer is empty".into()))
    }

    /// `sys/leases/revoke`.
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "lease_id": lease_id });
        self.send(Method::PUT, "sys/leases/revoke", &[], Some(&body)).await.map(|_| ())
    }

    async fn send(&self, method: Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<Option<Secret>, ClientError> {
        let url = self.url(path);
        let mut attempt = 0u32;
        loop {
            match self.send_once(method.clone(), &url, query, body).await {
                Err(e) if is_transient(&e) => match self.retry_delay(attempt) {
                    Some(delay) => {
                        tracing::debug!(path, attempt, error = %e, "retrying Vault request in {delay:?}");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// How long to wait before the next try, or `None` to give up: within the start-up patience
    /// window every failure is retried (the last try lands at its end), after it `max_retries` times.
    fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        let left = self.patient_until.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            Some(backoff(attempt).min(left))
        } else if attempt < self.max_retries {
            Some(backoff(attempt))
        } else {
            None
        }
    }

    async fn send_once(&self, method: Method, url: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<Option<Secret>, ClientError> {
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        let mut req = self.http.request(method, url).header("X-Vault-Request", "true");
        for (name, value) in self.headers.iter() {
            req = req.header(name.as_str(), value.expose());
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(token) = &self.token {
            req = req.header("X-Vault-Token", token.expose());
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if !status.is_success() {
            let errors = serde_json::from_slice::<ErrorBody>(&bytes).map(|b| b.errors).unwrap_or_default();
            return Err(ClientError::Status { status: status.as_u16(), errors });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice::<Secret>(&bytes).map(Some).map_err(|e| ClientError::Decode(format!("{e} (HTTP {})", status.as_u16())))
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable { addr: self.addr.clone(), cause: root_cause(e) }
    }
}

/// Redirects: one `307` to the same scheme, host and port (a path change), and nothing else.
/// Following any redirect would send `X-Vault-Token` (and login bodies) to wherever a Vault, or
/// anything posing as one, points: another host, or plain HTTP. Stopped redirects are answered
/// as the 3xx status they are.
fn same_origin_307(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let from = attempt.previous().last();
    let to = attempt.url();
    let same =
        from.is_some_and(|f| f.scheme() == to.scheme() && f.host_str() == to.host_str() && f.port_or_known_default() == to.port_or_known_default());
    if attempt.status() == StatusCode::TEMPORARY_REDIRECT && attempt.previous().len() == 1 && same { attempt.follow() } else { attempt.stop() }
}

fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } => true,
        ClientError::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
        _ => false,
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(5)).min(2_000);
    Duration::from_millis(base * 3 / 4 + fastrand::u64(0..=base / 2))
}

/// The innermost cause of an error ("Connection refused (os error 111)"), plus TLS hints.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    if text.contains("UnknownIssuer") {
        format!("{text}\n  hint: set VAULT_CACERT to the CA that signed Vault's certificate")
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        format!("{text}\n  hint: the certificate does not name this host; set VAULT_TLS_SERVER_NAME")
    } else if text.contains("CertificateRequired") {
        format!("{text}\n  hint: Vault requires a client certificate; set VAULT_CLIENT_CERT and VAULT_CLIENT_KEY")
    } else if e.to_string().contains("timed out") || text.contains("timed out") {
        format!("timed out ({text})")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_joins_vault_errors() {
        assert_eq!(status_text(403, &["permission denied".into()]), "permission denied (403)");
        assert_eq!(status_text(404, &[]), "not found (404)");
        assert_eq!(status_text(400, &["1 error occurred:\n\t* invalid role ID\n\n".into()]), "invalid role ID (400)");
        assert_eq!(status_text(400, &["2 errors occurred:\n\t* a\n\t* b\n".into()]), "a; b (400)");
    }

    #[test]
    fn the_rate_limit_spaces_requests_after_the_burst() {
        let limiter = RateLimiter::new(10.0, 2);
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(limiter.reserve(), Duration::ZERO);
        let third = limiter.reserve();
        assert!(third > Duration::from_millis(80) && third <= Duration::from_millis(100), "{third:?}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            let d = backoff(attempt);
            assert!(d >= Duration::from_millis(75) && d <= Duration::from_millis(2_500), "{attempt}: {d:?}");
        }
        assert!(backoff(0) < Duration::from_millis(200));
        assert!(backoff(10) >= Duration::from_millis(1_500));
    }

    #[test]
    fn four_requests_at_a_time_to_a_vault_on_this_host_sixteen_elsewhere() {
        let config = |vars: &[(&str, &str)]| Config::from_env(&vars.iter().copied().collect()).unwrap_or_else(|e| panic!("{vars:?}: {e:?}"));
        for addr in [
            "http://127.0.0.1:8200",
            "https://127.0.0.53:8200",
            "http://[::1]:8200",
            "http://localhost:8100",
            "https://LocalHost",
            "unix:///run/agent.sock",
        ] {
            assert_eq!(in_flight(&config(&[("VAULT_ADDR", addr)])), IN_FLIGHT_ON_THIS_HOST, "{addr}");
        }
        for addr in [
            "https://vault:8200",
            "https://vault.vault.svc:8200",
            "http://10.0.0.1:8200",
            "http://[fd00::1]:8200",
            "https://localhost.example.com",
            "http://128.0.0.1",
        ] {
            assert_eq!(in_flight(&config(&[("VAULT_ADDR", addr)])), IN_FLIGHT, "{addr}");
        }
        // Through a proxy the connections go to the proxy, and Vault is beyond it.
        let proxied = config(&[("VAULT_ADDR", "http://127.0.0.1:8200"), ("VAULT_HTTP_PROXY", "http://127.0.0.1:3128")]);
        assert_eq!(in_flight(&proxied), IN_FLIGHT);
    }

    #[test]
    fn secret_debug_shows_key_names_only() {
        let s: Secret = serde_json::from_str(r#"{"lease_duration":5,"data":{"password":"hunter2"}}"#).unwrap();
        let text = format!("{s:?}");
        assert!(text.contains("password") && !text.contains("hunter2"), "{text}");
    }
}
