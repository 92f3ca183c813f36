//! Configuration from the `VAULT_*` environment, with Bank-Vaults' names and defaults.
//!
//! [`Config::from_env`] is pure (it reads an [`Env`], never the process environment) and reports
//! every bad variable in one run. File contents (token files, JWTs, CA certificates) are read later,
//! by the stage that needs them.

mod names;
pub mod reader;

pub use names::*;
pub use reader::{FieldError, Lookup, Reader, parse_bool, parse_duration};

use crate::SecretString;
use crate::reference::{self, Reference};
use reader::Found;
use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

/// `VAULT_TOKEN=vault:login`: log in, and hand the obtained token to the app.
pub const LOGIN_TOKEN: &str = "vault:login";
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:8200";
pub const DEFAULT_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TRANSIT_BATCH_SIZE: usize = 25;

/// The process environment (or a test's), in order, as raw bytes.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Vec<(OsString, OsString)>,
}

impl Env {
    pub fn from_process() -> Self {
        Self { vars: std::env::vars_os().collect() }.with_aliases()
    }

    /// With each alias of a setting (`BAO_ADDR`, `SECRET_INIT_DAEMON`, `VAULT_FROM_PATH`: the
    /// names of Bank-Vaults' successor) also set under the setting's own name, unless that is set
    /// already (ours win, then the first alias). The aliases stay, so the app's environment is
    /// scrubbed of them as of the settings.
    pub fn with_aliases(mut self) -> Self {
        let mut added = Vec::new();
        for (name, value) in &self.vars {
            let Some(canonical) = name.to_str().and_then(names::canonical_name) else { continue };
            if name.to_str() != Some(canonical) && self.get(canonical).is_none() && !added.iter().any(|(n, _): &(OsString, OsString)| n == canonical)
            {
                added.push((OsString::from(canonical), value.clone()));
            }
        }
        self.vars.extend(added);
        self
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
    }

    pub fn vars(&self) -> &[(OsString, OsString)] {
        &self.vars
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self { vars: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
}

impl Lookup for Env {
    fn find(&self, key: &str) -> Option<Found<'_>> {
        self.get(key).map(|v| Found { name: Cow::Owned(key.to_string()), text: v.to_str() })
    }
}

/// Where the CA certificates that verify Vault come from (they replace the system roots, as in Vault's Go client).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaSource {
    pub file: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub pem: Option<String>,
}

impl CaSource {
    /// True when any custom CA is configured.
    pub fn is_set(&self) -> bool {
        self.file.is_some() || self.dir.is_some() || self.pem.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub ca: CaSource,
    /// `VAULT_CACERT_RELOAD` (on unless false, as Vault's SDK): a changed `VAULT_CACERT` file or
    /// `VAULT_CAPATH` directory is read again at the next connection.
    pub ca_reload: bool,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub skip_verify: bool,
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `jwt` (default), `kubernetes`, `namespaced`: `POST auth/<path>/login {role, jwt}`.
    Jwt,
    /// `approle`: `POST auth/<path>/login {role_id, secret_id}` (not in Bank-Vaults).
    AppRole,
    /// `aws-iam`: a signed `sts:GetCallerIdentity` request.
    AwsIam,
    /// `aws-ec2`: the instance identity document, with Bank-Vaults' nonce.
    AwsEc2,
    /// `gcp-gce`: the metadata server's identity token.
    GcpGce,
    /// `gcp-iam`: a JWT signed by IAM Credentials for the default service account.
    GcpIam,
    /// `azure`: the managed identity's token and the instance's placement.
    Azure,
    /// `cert`: the TLS client certificate (`VAULT_CLIENT_CERT`; not in Bank-Vaults).
    Cert,
}

impl AuthMethod {
    pub const EXPECTED: &str = "jwt, kubernetes, namespaced, approle, cert, aws-iam, aws-ec2, gcp-gce, gcp-iam or azure";

    /// `VAULT_AUTH_METHOD` (and the webhook's `vault-auth-method` annotation).
    pub fn parse(s: &str) -> Option<AuthMethod> {
        match s {
            "jwt" | "kubernetes" | "namespaced" => Some(AuthMethod::Jwt),
            "approle" => Some(AuthMethod::AppRole),
            "aws-iam" => Some(AuthMethod::AwsIam),
            "aws-ec2" => Some(AuthMethod::AwsEc2),
            "gcp-gce" => Some(AuthMethod::GcpGce),
            "gcp-iam" => Some(AuthMethod::GcpIam),
            "azure" => Some(AuthMethod::Azure),
            "cert" => Some(AuthMethod::Cert),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::AppRole => "approle",
            AuthMethod::AwsIam => "aws-iam",
            AuthMethod::AwsEc2 => "aws-ec2",
            AuthMethod::GcpGce => "gcp-gce",
            AuthMethod::GcpIam => "gcp-iam",
            AuthMethod::Azure => "azure",
            AuthMethod::Cert => "cert",
        }
    }

    /// The mount when `VAULT_PATH` is unset (Vault's own defaults for each method).
    pub fn default_mount(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "kubernetes",
            AuthMethod::AppRole => "approle",
            AuthMethod::AwsIam | AuthMethod::AwsEc2 => "aws",
            AuthMethod::GcpGce | AuthMethod::GcpIam => "gcp",
            AuthMethod::Azure => "azure",
            AuthMethod::Cert => "cert",
        }
    }
}

/// Where the cloud login methods reach their clouds (the clouds' own SDK variables).
#[derive(Debug, Clone, PartialEq)]
pub enum CloudAuth {
    /// Not a cloud method.
    None,
    AwsIam {
        credentials: crate::cloud::aws::CredentialSource,
        /// The STS endpoint the signed request names, and the region it is signed for.
        sts: String,
        region: String,
        server_id: Option<String>,
    },
    /// IMDS (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).
    AwsEc2 {
        imds: String,
    },
    Gcp(crate::cloud::gcp::GcpEndpoints),
    Azure(crate::cloud::azure::Imds),
}

/// A value given inline or as a file to read.
#[derive(Debug, Clone, PartialEq)]
pub enum Given {
    Value(crate::SecretString),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// `VAULT_TOKEN_FILE`: highest priority.
    pub token_file: Option<PathBuf>,
    /// A literal `VAULT_TOKEN` (not `vault:login`).
    pub token: Option<crate::SecretString>,
    /// `VAULT_TOKEN=vault:login`.
    pub login_requested: bool,
    /// `VAULT_TOKEN_PATH`, else `$HOME/.vault-token`: used when it exists and no token was given.
    pub token_helper_file: Option<PathBuf>,
    pub method: AuthMethod,
    pub role: String,
    /// `VAULT_ROLE` was set (else `role` is `default`): the cert method names a role only then.
    pub role_set: bool,
    pub mount: String,
    pub jwt_file: PathBuf,
    pub role_id: Option<Given>,
    pub secret_id: Option<Given>,
    pub cloud: CloudAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What daemon mode does when a lease can't be extended any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLeaseEnd {
    /// Fetch new secrets and restart the app with them before the old ones expire (default).
    Restart,
    /// Stop the app and exit when the lease expires (Bank-Vaults' behaviour, at the right time).
    Exit,
    /// Keep running; log it.
    Ignore,
}

/// Daemon-mode process settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub on_lease_end: OnLeaseEnd,
    /// `None` (unset): a fifth of the lease, up to 5 min, so a fleet's restarts spread out.
    pub restart_splay: Option<Duration>,
    pub process_group: bool,
    pub terminate_descendants: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transit {
    pub key_id: Option<String>,
    pub mount: String,
    pub batch_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FromPath {
    pub path: String,
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub addr: String,
    /// `VAULT_ADDR=unix:///path`: every request goes over this socket (`addr` is then
    /// `http://localhost`).
    pub unix_socket: Option<PathBuf>,
    /// `VAULT_HEADERS`: extra request headers (a JSON object of strings; no `X-Vault-*`). Values
    /// may be credentials of a proxy in front of Vault: never printed.
    pub headers: Vec<(String, SecretString)>,
    /// `VAULT_RATE_LIMIT`: requests a second, and the burst.
    pub rate_limit: Option<(f64, u32)>,
    /// Not `VAULT_DISABLE_REDIRECTS`: a same-origin 307 is followed (once).
    pub follow_redirects: bool,
    pub tls: TlsSettings,
    pub namespace: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub proxy: Option<String>,
    pub auth: AuthSettings,
    pub ignore_missing: bool,
    pub passthrough: Vec<String>,
    pub json_log: bool,
    pub log_level: LogLevel,
    /// `None`: the mode's default (exec: keep the token; daemon: revoke what vault-env obtained).
    pub revoke_token: Option<bool>,
    pub daemon: Option<bool>,
    pub daemon_settings: DaemonSettings,
    pub delay: Duration,
    pub from_path: Vec<FromPath>,
    pub transit: Transit,
}

/// One bad variable (the reader's error: its value is shown unless it may be a secret).
pub type ConfigError = FieldError;

fn parse_log_level(s: &str) -> Option<LogLevel> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Some(LogLevel::Trace),
        "debug" => Some(LogLevel::Debug),
        "info" => Some(LogLevel::Info),
        "warn" | "warning" => Some(LogLevel::Warn),
        "error" => Some(LogLevel::Error),
        _ => None,
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, Vec<ConfigError>> {
        let mut r = Reader::new(env);

        let addr = r.text(VAULT_AGENT_ADDR).or_else(|| r.text(VAULT_ADDR)).unwrap_or_else(|| DEFAULT_ADDR.into());
        let addr = addr.trim_end_matches('/').to_string();
        // `unix:///path` (Vault Agent's listener, as Vault's client reads it): HTTP over the socket.
        let (addr, unix_socket) = match addr.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => ("http://localhost".to_string(), Some(PathBuf::from(path))),
            Some(_) => {
                r.push(FieldError::invalid(VAULT_ADDR, &addr, "unix:// and an absolute socket path, such as unix:///run/vault/agent.sock"));
                (addr, None)
            }
            None => (addr, None),
        };
        match reqwest::Url::parse(&addr) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Err(_) if !addr.is_ascii() => r.push(FieldError::invalid(
                VAULT_ADDR,
                &addr,
                "a URL with an ASCII host name, such as https://vault:8200 (an internationalized name in its xn-- form)",
            )),
            _ => r.push(FieldError::invalid(VAULT_ADDR, &addr, "a URL such as https://vault:8200")),
        }

        let client_cert = match (r.text(VAULT_CLIENT_CERT), r.text(VAULT_CLIENT_KEY)) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(_), None) => {
                r.fail(VAULT_CLIENT_KEY, format!("must be set when {VAULT_CLIENT_CERT} is"));
                None
            }
            (None, Some(_)) => {
                r.fail(VAULT_CLIENT_CERT, format!("must be set when {VAULT_CLIENT_KEY} is"));
                None
            }
        };
        let tls = TlsSettings {
            ca: CaSource {
                file: r.text(VAULT_CACERT).map(PathBuf::from),
                dir: r.text(VAULT_CAPATH).map(PathBuf::from),
                pem: r.text(VAULT_CACERT_BYTES),
            },
            ca_reload: r.bool(VAULT_CACERT_RELOAD, true),
            client_cert,
            skip_verify: r.bool(VAULT_SKIP_VERIFY, false),
            server_name: r.text(VAULT_TLS_SERVER_NAME),
        };
        let headers = read_headers(&mut r);
        let rate_limit =
            r.parsed(VAULT_RATE_LIMIT, None, "RATE or RATE:BURST, requests a second (such as 10 or 10:20)", |s| parse_rate_limit(s).map(Some));
        let follow_redirects = !r.bool(VAULT_DISABLE_REDIRECTS, false);
        if r.optional_bool(VAULT_SRV_LOOKUP) == Some(true) {
            tracing::warn!("{VAULT_SRV_LOOKUP} is not supported: {VAULT_ADDR}'s host is used as it is");
        }
        if r.is_set(VAULT_WRAP_TTL) {
            tracing::warn!(
                "{VAULT_WRAP_TTL} does not apply to vault-env's own reads (a wrapped answer holds no secret); the app gets it with vault:login"
            );
        }
        let namespace = r.text(VAULT_NAMESPACE).map(|s| s.trim().trim_matches('/').to_string()).filter(|s| !s.is_empty());
        let timeout = r.duration(VAULT_CLIENT_TIMEOUT, DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            r.fail(VAULT_CLIENT_TIMEOUT, "must be greater than zero");
        }
        let max_retries = r.parsed(VAULT_MAX_RETRIES, 2, "a whole number", |s| s.parse().ok());
        let proxy = r.text(VAULT_HTTP_PROXY).or_else(|| r.text(VAULT_PROXY_ADDR));

        let auth = read_auth(&mut r);
        let ignore_missing = r.bool(VAULT_IGNORE_MISSING_SECRETS, false);
        let passthrough = r
            .text(VAULT_ENV_PASSTHROUGH)
            .map(|s| s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let json_log = r.bool(VAULT_JSON_LOG, false);
        let log_level = r.parsed(VAULT_LOG_LEVEL, LogLevel::Info, "one of trace, debug, info, warn, error", parse_log_level);
        let revoke_token = r.optional_bool(VAULT_REVOKE_TOKEN);
        let daemon = r.optional_bool(VAULT_ENV_DAEMON);
        let daemon_settings = DaemonSettings {
            stop_signal: r.parsed(
                VAULT_ENV_STOP_SIGNAL,
                vault_env_supervisor::signals::SIGTERM,
                "a signal name such as SIGTERM or SIGINT",
                vault_env_supervisor::signals::parse,
            ),
            stop_timeout: r.duration(VAULT_ENV_STOP_TIMEOUT, Duration::from_secs(10)),
            on_lease_end: r.parsed(VAULT_ENV_ON_LEASE_END, OnLeaseEnd::Restart, "restart, exit or ignore", |s| match s {
                "restart" => Some(OnLeaseEnd::Restart),
                "exit" => Some(OnLeaseEnd::Exit),
                "ignore" => Some(OnLeaseEnd::Ignore),
                _ => None,
            }),
            restart_splay: r.optional_duration(VAULT_ENV_RESTART_SPLAY),
            process_group: r.bool(VAULT_ENV_PROCESS_GROUP, false),
            terminate_descendants: r.bool(VAULT_ENV_TERMINATE_DESCENDANTS, false),
        };
        let delay = r.duration(VAULT_ENV_DELAY, Duration::ZERO);
        let from_path = read_from_path(&mut r);
        let transit = Transit {
            key_id: r.text(VAULT_TRANSIT_KEY_ID),
            mount: r.text(VAULT_TRANSIT_PATH).map_or_else(|| "transit".into(), |s| s.trim_matches('/').to_string()),
            // Unset or 0 means the webhook's default; Bank-Vaults panics (divide by zero) here.
            batch_size: match r.parsed(VAULT_TRANSIT_BATCH_SIZE, 0usize, "a whole number", |s| s.parse().ok()) {
                0 => DEFAULT_TRANSIT_BATCH_SIZE,
                n => n,
            },
        };

        r.finish(Config {
            addr,
            unix_socket,
            headers,
            rate_limit,
            follow_redirects,
            tls,
            namespace,
            timeout,
            max_retries,
            proxy,
            auth,
            ignore_missing,
            passthrough,
            json_log,
            log_level,
            revoke_token,
            daemon,
            daemon_settings,
            delay,
            from_path,
            transit,
        })
    }
}

fn read_auth(r: &mut Reader<'_, Env>) -> AuthSettings {
    // VAULT_TOKEN may hold a secret: never echo it in an error.
    let raw_token = r.secret(VAULT_TOKEN);
    // `bao:login`: the successor's spelling for OpenBao.
    let login_requested = raw_token.as_ref().is_some_and(|t| t.expose() == LOGIN_TOKEN || t.expose() == "bao:login");
    let token = raw_token.filter(|_| !login_requested);

    let method = r.parsed(VAULT_AUTH_METHOD, AuthMethod::Jwt, AuthMethod::EXPECTED, AuthMethod::parse);
    let default_mount = method.default_mount();
    let secret_or_file = |r: &mut Reader<'_, Env>, var: &'static str, file_var: &'static str| -> Option<Given> {
        match (r.secret(var), r.text(file_var)) {
            (Some(v), _) => Some(Given::Value(v)),
            (None, Some(f)) => Some(Given::File(f.into())),
            (None, None) => None,
        }
    };
    AuthSettings {
        token_file: r.text(VAULT_TOKEN_FILE).map(PathBuf::from),
        token,
        login_requested,
        token_helper_file: r.text(VAULT_TOKEN_PATH).map(PathBuf::from).or_else(|| r.text(HOME).map(|h| PathBuf::from(h).join(".vault-token"))),
        method,
        role: r.text(VAULT_ROLE).unwrap_or_else(|| "default".into()),
        role_set: r.text(VAULT_ROLE).is_some(),
        mount: r.text(VAULT_PATH).map_or_else(|| default_mount.into(), |s| s.trim_matches('/').to_string()),
        jwt_file: r.text(KUBERNETES_SERVICE_ACCOUNT_TOKEN).or_else(|| r.text(VAULT_JWT_FILE)).unwrap_or_else(|| DEFAULT_JWT_FILE.into()).into(),
        role_id: secret_or_file(r, VAULT_ROLE_ID, VAULT_ROLE_ID_FILE),
        secret_id: secret_or_file(r, VAULT_SECRET_ID, VAULT_SECRET_ID_FILE),
        cloud: read_cloud(r, method),
    }
}

/// What each cloud method needs, from `env` (the webhook logs in with an object's
/// `vault-auth-method`, which may be any of them).
pub fn cloud_auths(env: &Env) -> Vec<(AuthMethod, CloudAuth)> {
    let mut r = Reader::new(env);
    [AuthMethod::AwsIam, AuthMethod::AwsEc2, AuthMethod::GcpGce, AuthMethod::GcpIam, AuthMethod::Azure]
        .into_iter()
        .map(|m| (m, read_cloud(&mut r, m)))
        .collect()
}

/// What the cloud method `method` needs, from the clouds' SDK variables.
fn read_cloud(r: &mut Reader<'_, Env>, method: AuthMethod) -> CloudAuth {
    use crate::cloud::aws::credentials as aws;
    use crate::cloud::{azure, gcp};
    let mut var = |name: &str| r.text(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    match method {
        AuthMethod::AwsIam => {
            let region = var(aws::AWS_REGION).or_else(|| var(aws::AWS_DEFAULT_REGION));
            // As Vault's own client: the global endpoint (signed for us-east-1) unless a region is set.
            let sts = var(aws::AWS_ENDPOINT_URL_STS)
                .or_else(|| var(aws::AWS_ENDPOINT_URL))
                .unwrap_or_else(|| format!("{}/", aws::sts_endpoint(region.as_deref())));
            let server_id = var(VAULT_AWS_IAM_SERVER_ID);
            CloudAuth::AwsIam {
                credentials: crate::cloud::aws::CredentialSource::read(r, "vault-env"),
                sts,
                region: region.unwrap_or_else(|| "us-east-1".into()),
                server_id,
            }
        }
        AuthMethod::AwsEc2 => CloudAuth::AwsEc2 { imds: var(aws::AWS_EC2_METADATA_SERVICE_ENDPOINT).unwrap_or_else(|| aws::DEFAULT_IMDS.into()) },
        AuthMethod::GcpGce | AuthMethod::GcpIam => CloudAuth::Gcp(gcp::GcpEndpoints::new(
            var(gcp::GCE_METADATA_HOST).as_deref(),
            var(gcp::CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS).as_deref(),
        )),
        AuthMethod::Azure => {
            CloudAuth::Azure(azure::Imds::new(var(azure::AZURE_POD_IDENTITY_AUTHORITY_HOST).as_deref(), var(azure::AZURE_CLIENT_ID).as_deref()))
        }
        AuthMethod::Jwt | AuthMethod::AppRole | AuthMethod::Cert => CloudAuth::None,
    }
}

/// `VAULT_HEADERS`: a JSON object of string values, none named `X-Vault-*` (Vault's client
/// refuses those too). The value is never echoed: it may hold a proxy's credentials.
fn read_headers(r: &mut Reader<'_, Env>) -> Vec<(String, SecretString)> {
    let Some(text) = r.secret(VAULT_HEADERS) else { return Vec::new() };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text.expose()) else {
        r.fail(VAULT_HEADERS, "is not valid: expected a JSON object of header names and string values");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in map {
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        match value.as_str() {
            _ if !valid_name => r.fail(VAULT_HEADERS, format!("header {name:?} is not a valid header name")),
            _ if name.to_ascii_lowercase().starts_with("x-vault-") => {
                r.fail(VAULT_HEADERS, format!("header {name:?}: headers starting with X-Vault- are for Vault's own use"))
            }
            Some(v) if !v.bytes().any(|b| b.is_ascii_control() && b != b'\t') => out.push((name, SecretString::new(v.to_string()))),
            _ => r.fail(VAULT_HEADERS, format!("header {name:?}: its value must be a string without control characters")),
        }
    }
    out
}

/// `VAULT_RATE_LIMIT`: `RATE` or `RATE:BURST` (Vault's client: the burst defaults to the rate).
fn parse_rate_limit(s: &str) -> Option<(f64, u32)> {
    let (rate, burst) = match s.split_once(':') {
        Some((rate, burst)) => (decimal(rate.trim())?, burst.trim().parse::<u32>().ok()?),
        None => {
            let rate = decimal(s.trim())?;
            (rate, rate as u32)
        }
    };
    (rate > 0.0).then_some((rate, burst.max(1)))
}

/// `12` or `0.5`: a plain decimal, read without the float parser (its tables cost the binary
/// 16 KB for this one setting).
fn decimal(s: &str) -> Option<f64> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole = if whole.is_empty() { 0 } else { whole.parse::<u32>().ok()? };
    let fraction = if fraction.is_empty() { 0.0 } else { f64::from(fraction.parse::<u32>().ok()?) / 10f64.powi(fraction.len() as i32) };
    Some(f64::from(whole) + fraction)
}

/// `VAULT_ENV_FROM_PATH=secret/data/a,secret/data/b#3`.
fn read_from_path(r: &mut Reader<'_, Env>) -> Vec<FromPath> {
    let Some(list) = r.text(VAULT_ENV_FROM_PATH) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        // Reuse the reference grammar: `PATH#VERSION` reads like `vault:PATH#KEY#VERSION`.
        let (path, version) = entry.split_once('#').unwrap_or((entry, ""));
        let as_ref = if version.is_empty() { format!("vault:{path}#_") } else { format!("vault:{path}#_#{version}") };
        match reference::parse_reference(&as_ref) {
            Ok(Reference::Read { path, version, .. }) => out.push(FromPath { path, version }),
            Ok(_) => r.fail(VAULT_ENV_FROM_PATH, format!("entry {entry:?} is not a path")),
            Err(e) => r.fail(VAULT_ENV_FROM_PATH, format!("entry {entry:?}: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn rate_limits_as_vaults_client_reads_them() {
        assert_eq!(parse_rate_limit("10"), Some((10.0, 10)));
        assert_eq!(parse_rate_limit("2.5:4"), Some((2.5, 4)));
        assert_eq!(parse_rate_limit("0.5"), Some((0.5, 1)));
        for bad in ["", "0", "-1", "a", "1:", "1:x", ".", "1e3", "1.2.3"] {
            assert_eq!(parse_rate_limit(bad), None, "{bad}");
        }
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    #[test]
    fn config_defaults_match_bank_vaults() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.addr, "https://127.0.0.1:8200");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.max_retries, 2);
        assert_eq!(c.auth.method, AuthMethod::Jwt);
        assert_eq!(c.auth.role, "default");
        assert_eq!(c.auth.mount, "kubernetes");
        assert_eq!(c.auth.jwt_file, PathBuf::from(DEFAULT_JWT_FILE));
        assert_eq!(c.transit.mount, "transit");
        assert_eq!(c.transit.batch_size, 25);
        assert_eq!(c.log_level, LogLevel::Info);
        assert!(!c.ignore_missing && !c.json_log);
        assert_eq!((c.daemon, c.revoke_token), (None, None));
        let d = &c.daemon_settings;
        assert_eq!((d.stop_signal, d.stop_timeout, d.on_lease_end), (15, Duration::from_secs(10), OnLeaseEnd::Restart));
        assert!(!d.process_group && !d.terminate_descendants && d.restart_splay.is_none());
    }

    #[test]
    fn config_reads_every_setting() {
        let c = Config::from_env(&env(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200/"),
            ("VAULT_CACERT", "/ca.pem"),
            ("VAULT_SKIP_VERIFY", "True"),
            ("VAULT_TLS_SERVER_NAME", "vault.local"),
            ("VAULT_NAMESPACE", "team-a/"),
            ("VAULT_CLIENT_TIMEOUT", "1m30s"),
            ("VAULT_MAX_RETRIES", "5"),
            ("VAULT_TOKEN", "vault:login"),
            ("VAULT_ROLE", "app"),
            ("VAULT_PATH", "jwt"),
            ("VAULT_AUTH_METHOD", "kubernetes"),
            ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", "/sa/token"),
            ("VAULT_JWT_FILE", "/other"),
            ("VAULT_IGNORE_MISSING_SECRETS", "1"),
            ("VAULT_ENV_PASSTHROUGH", "VAULT_ADDR, VAULT_ROLE ,"),
            ("VAULT_JSON_LOG", "true"),
            ("VAULT_LOG_LEVEL", "WARNING"),
            ("VAULT_ENV_DAEMON", "false"),
            ("VAULT_ENV_DELAY", "5"),
            ("VAULT_ENV_FROM_PATH", "secret/data/a, secret/data/b#3"),
            ("VAULT_TRANSIT_KEY_ID", "app"),
            ("VAULT_TRANSIT_PATH", "/tr/"),
            ("VAULT_TRANSIT_BATCH_SIZE", "0"),
            ("VAULT_ENV_STOP_SIGNAL", "SIGINT"),
            ("VAULT_ENV_STOP_TIMEOUT", "3s"),
            ("VAULT_ENV_ON_LEASE_END", "exit"),
            ("VAULT_ENV_RESTART_SPLAY", "2s"),
            ("VAULT_ENV_PROCESS_GROUP", "true"),
        ]))
        .unwrap();
        let d = &c.daemon_settings;
        assert_eq!(
            (d.stop_signal, d.stop_timeout, d.on_lease_end, d.restart_splay),
            (2, Duration::from_secs(3), OnLeaseEnd::Exit, Some(Duration::from_secs(2)))
        );
        assert!(d.process_group);
        assert_eq!(c.addr, "http://127.0.0.1:8200");
        assert_eq!(c.tls.ca.file, Some(PathBuf::from("/ca.pem")));
        assert!(c.tls.skip_verify);
        assert_eq!(c.tls.server_name.as_deref(), Some("vault.local"));
        assert_eq!(c.namespace.as_deref(), Some("team-a"));
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert_eq!(c.max_retries, 5);
        assert!(c.auth.login_requested && c.auth.token.is_none());
        assert_eq!((c.auth.role.as_str(), c.auth.mount.as_str()), ("app", "jwt"));
        assert_eq!(c.auth.jwt_file, PathBuf::from("/sa/token"));
        assert!(c.ignore_missing && c.json_log);
        assert_eq!(c.passthrough, vec!["VAULT_ADDR", "VAULT_ROLE"]);
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.daemon, Some(false));
        assert_eq!(c.delay, Duration::from_secs(5));
        assert_eq!(
            c.from_path,
            vec![FromPath { path: "secret/data/a".into(), version: None }, FromPath { path: "secret/data/b".into(), version: Some(3) }]
        );
        assert_eq!(c.transit, Transit { key_id: Some("app".into()), mount: "tr".into(), batch_size: 25 });
    }

    #[test]
    fn config_reports_every_bad_variable_at_once() {
        let errors = Config::from_env(&env(&[
            ("VAULT_ADDR", "not a url"),
            ("VAULT_SKIP_VERIFY", "maybe"),
            ("VAULT_CLIENT_TIMEOUT", "soon"),
            ("VAULT_MAX_RETRIES", "-1"),
            ("VAULT_AUTH_METHOD", "aws-ecs"),
            ("VAULT_LOG_LEVEL", "loud"),
            ("VAULT_CLIENT_CERT", "/c.pem"),
            ("VAULT_ENV_FROM_PATH", "ok/path,bad#x"),
            ("VAULT_TRANSIT_BATCH_SIZE", "many"),
            ("VAULT_ENV_ON_LEASE_END", "explode"),
        ]))
        .unwrap_err();
        let vars: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            vars,
            [
                "VAULT_ADDR",
                "VAULT_CLIENT_KEY",
                "VAULT_SKIP_VERIFY",
                "VAULT_CLIENT_TIMEOUT",
                "VAULT_MAX_RETRIES",
                "VAULT_AUTH_METHOD",
                "VAULT_LOG_LEVEL",
                "VAULT_ENV_ON_LEASE_END",
                "VAULT_ENV_FROM_PATH",
                "VAULT_TRANSIT_BATCH_SIZE"
            ]
        );
        assert!(errors[3].to_string().contains("\"soon\" is not valid"), "{}", errors[3]);
    }

    /// Host names are read in ASCII only (the binary leaves out the tables for Unicode names): an
    /// internationalized one is an error that says to write its xn-- form, which works.
    #[test]
    fn vault_addr_host_names_are_ascii() {
        let errors = Config::from_env(&env(&[("VAULT_ADDR", "https://bücher.example:8200")])).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].name, "VAULT_ADDR");
        assert!(errors[0].to_string().contains("ASCII host name") && errors[0].to_string().contains("xn--"), "{}", errors[0]);
        for ok in ["https://xn--bcher-kva.example:8200", "http://Vault.Example:8200", "http://127.0.0.1:8200", "http://[::1]:8200"] {
            assert!(Config::from_env(&env(&[("VAULT_ADDR", ok)])).is_ok(), "{ok}");
        }
    }

    /// Bank-Vaults' cloud methods: their default mounts and where they reach their clouds.
    #[test]
    fn cloud_methods_and_their_endpoints() {
        use crate::cloud::{azure, gcp};
        let auth = |pairs: &[(&str, &str)]| Config::from_env(&env(pairs)).unwrap().auth;
        let a = auth(&[("VAULT_AUTH_METHOD", "aws-iam"), ("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        assert_eq!(a.mount, "aws");
        match &a.cloud {
            CloudAuth::AwsIam { sts, region, server_id, .. } => {
                assert_eq!((sts.as_str(), region.as_str(), server_id), ("https://sts.amazonaws.com/", "us-east-1", &None))
            }
            other => panic!("{other:?}"),
        }
        let a = auth(&[("VAULT_AUTH_METHOD", "aws-iam"), ("AWS_REGION", "eu-west-1"), ("VAULT_AWS_IAM_SERVER_ID", "vault.example.com")]);
        match &a.cloud {
            CloudAuth::AwsIam { sts, region, server_id, .. } => {
                assert_eq!(
                    (sts.as_str(), region.as_str(), server_id.as_deref()),
                    ("https://sts.eu-west-1.amazonaws.com/", "eu-west-1", Some("vault.example.com"))
                )
            }
            other => panic!("{other:?}"),
        }
        let a = auth(&[("VAULT_AUTH_METHOD", "aws-ec2"), ("VAULT_PATH", "aws-ec2")]);
        assert_eq!((a.mount.as_str(), &a.cloud), ("aws-ec2", &CloudAuth::AwsEc2 { imds: "http://169.254.169.254".into() }));
        let a = auth(&[("VAULT_AUTH_METHOD", "gcp-gce"), ("GCE_METADATA_HOST", "127.0.0.1:8080")]);
        assert_eq!((a.mount.as_str(), &a.cloud), ("gcp", &CloudAuth::Gcp(gcp::GcpEndpoints::new(Some("127.0.0.1:8080"), None))));
        assert_eq!(gcp::GcpEndpoints::new(Some("127.0.0.1:8080"), None).metadata, "http://127.0.0.1:8080");
        assert_eq!(gcp::GcpEndpoints::new(None, None).iam_credentials, "https://iamcredentials.googleapis.com");
        let a = auth(&[("VAULT_AUTH_METHOD", "azure"), ("AZURE_CLIENT_ID", "id-1")]);
        assert_eq!((a.mount.as_str(), &a.cloud), ("azure", &CloudAuth::Azure(azure::Imds::new(None, Some("id-1")))));
        let a = auth(&[("VAULT_AUTH_METHOD", "cert")]);
        assert_eq!((a.mount.as_str(), a.role_set, &a.cloud), ("cert", false, &CloudAuth::None));
    }

    #[test]
    fn config_never_echoes_secret_variables() {
        use std::os::unix::ffi::OsStringExt;
        let env: Env = [(OsString::from("VAULT_TOKEN"), OsString::from_vec(b"s.\xff\xfe".to_vec()))].into_iter().collect();
        let errors = Config::from_env(&env).unwrap_err();
        assert_eq!(errors[0].to_string(), "VAULT_TOKEN: is not valid UTF-8");
    }

    #[test]
    fn config_approle_defaults_to_its_mount() {
        let c = Config::from_env(&env(&[("VAULT_AUTH_METHOD", "approle"), ("VAULT_ROLE_ID", "rid"), ("VAULT_SECRET_ID_FILE", "/s")])).unwrap();
        assert_eq!(c.auth.method, AuthMethod::AppRole);
        assert_eq!(c.auth.mount, "approle");
        assert_eq!(c.auth.role_id, Some(Given::Value(crate::SecretString::new("rid"))));
        assert_eq!(c.auth.secret_id, Some(Given::File("/s".into())));
    }

    #[test]
    fn parse_duration_forms() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("x"), None);
    }
}
