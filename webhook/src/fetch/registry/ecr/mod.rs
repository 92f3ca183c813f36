//! Amazon ECR pull credentials from the node's instance role, for images on a private ECR
//! registry (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`) when the pod brings no pull secret for it:
//! what go-containerregistry's `k8schain` does for Bank-Vaults with the ECR credential helper.
//!
//! AWS credentials, in the AWS SDKs' order ([`Source`]): static keys, IRSA (web identity), EKS Pod
//! Identity (container credentials), the instance role (IMDSv2) → a SigV4-signed
//! `ecr:GetAuthorizationToken` → `AWS:<password>`, used as basic auth. Credentials and tokens are
//! kept until shortly before they expire. No AWS SDK: SigV4 is signed with `ring`, the project's
//! one crypto provider, and checked against AWS's published test vector and, in the black-box
//! tests, against botocore.
//!
//! Settings (the AWS SDKs' names): `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`;
//! `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+ `AWS_ROLE_SESSION_NAME`, `AWS_REGION`);
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` or `_RELATIVE_URI` (+ `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`);
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` (default `http://169.254.169.254`),
//! `AWS_EC2_METADATA_DISABLED=true`; endpoints `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_STS`,
//! `AWS_ENDPOINT_URL`.

use super::pull_secrets::DockerAuth;
use crate::fetch::cache::Gates;
use crate::metrics::Metrics;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vault_env::config::reader::{Lookup, Reader};

/// Credentials and tokens are renewed this long before they expire.
const MARGIN: Duration = Duration::from_secs(5 * 60);
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The region of a private ECR registry host (`ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]`,
/// with or without a port), and whether it is in the China partition.
pub fn ecr_region(registry: &str) -> Option<(&str, bool)> {
    let host = registry.rsplit_once(':').map_or(registry, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { registry });
    let parts: Vec<&str> = host.split('.').collect();
    let (head, cn) = match parts.as_slice() {
        [head @ .., "amazonaws", "com"] => (head, false),
        [head @ .., "amazonaws", "com", "cn"] => (head, true),
        _ => return None,
    };
    match head {
        [account, "dkr", "ecr" | "ecr-fips", region] if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !region.is_empty() => {
            Some((region, cn))
        }
        _ => None,
    }
}

/// An AWS access key; never printed.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// A request to sign. `headers` are lowercase names with trimmed values, and include `host`
/// and `x-amz-date`; their order does not matter.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// `YYYYMMDDTHHMMSSZ`, as in the `x-amz-date` header.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// The `Authorization` header of AWS Signature Version 4 (no query string: ECR's JSON API has
/// none).
pub fn sign(request: &Request<'_>, credentials: &AwsCredentials) -> String {
    let mut headers: Vec<(&str, &str)> = request.headers.to_vec();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(";");
    let body_hash = hex(digest::digest(&digest::SHA256, request.body).as_ref());
    let canonical = format!("{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{body_hash}", request.method, request.path);
    let date = request.amz_date.get(..8).unwrap_or(request.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", request.region, request.service);
    let to_sign = format!("AWS4-HMAC-SHA256\n{}\n{scope}\n{}", request.amz_date, hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref()));
    let key = [date, request.region, request.service, "aws4_request"]
        .iter()
        .fold(format!("AWS4{}", credentials.secret_access_key).into_bytes(), |key, part| hmac_sha256(&key, part).as_ref().to_vec());
    let signature = hex(hmac_sha256(&key, &to_sign).as_ref());
    format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}", credentials.access_key_id)
}

/// `2026-11-22T19:34:18Z` → `20261122T193418Z`.
fn amz_date(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string().replace(['-', ':'], "")
}

/// A secret setting; never printed.
#[derive(Clone)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the AWS credentials come from: the first source configured, in the AWS SDKs' order.
#[derive(Debug, Clone)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    Static(AwsCredentials),
    /// IRSA: STS `AssumeRoleWithWebIdentity` with the projected service-account token.
    WebIdentity { token_file: PathBuf, role_arn: String, session_name: String, sts: String },
    /// EKS Pod Identity (and ECS): the agent's endpoint, with its authorization token.
    Container { uri: String, token: Option<Redacted>, token_file: Option<PathBuf> },
    /// The instance role, through IMDSv2 at this endpoint.
    InstanceRole(String),
    /// `AWS_EC2_METADATA_DISABLED=true` and nothing else: ECR images need a pull secret.
    Disabled,
}

impl Source {
    pub fn read<S: Lookup + ?Sized>(r: &mut Reader<'_, S>) -> Source {
        let mut var = |name: &str| r.text(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            let session_token = var("AWS_SESSION_TOKEN");
            return Source::Static(AwsCredentials { access_key_id: id, secret_access_key: secret, session_token, expires: None });
        }
        if let (Some(file), Some(role_arn)) = (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN")) {
            let sts = var("AWS_ENDPOINT_URL_STS").or_else(|| var("AWS_ENDPOINT_URL")).unwrap_or_else(|| {
                match var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
                    Some(r) if r.starts_with("cn-") => format!("https://sts.{r}.amazonaws.com.cn"),
                    Some(r) => format!("https://sts.{r}.amazonaws.com"),
                    None => "https://sts.amazonaws.com".into(),
                }
            });
            let session_name = var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "vault-secrets-webhook".into());
            return Source::WebIdentity { token_file: file.into(), role_arn, session_name, sts };
        }
        let container = var("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .or_else(|| var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|r| format!("http://169.254.170.2{r}")));
        if let Some(uri) = container {
            let token = var("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(Redacted);
            return Source::Container { uri, token, token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from) };
        }
        match var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            true => Source::Disabled,
            false => Source::InstanceRole(var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EcrSettings {
    pub source: Source,
    /// The ECR API endpoint, instead of `https://api.ecr.REGION.amazonaws.com`.
    pub api_endpoint: Option<String>,
}

/// The credentials answer of IMDS and of the container credentials endpoint.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    #[serde(default)]
    code: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
}

/// The body of a 2xx answer to `request`; any other answer is an error.
async fn ok_text(request: reqwest::RequestBuilder) -> Result<String, reqwest::Error> {
    request.send().await?.error_for_status()?.text().await
}

async fn ok_json<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, reqwest::Error> {
    request.send().await?.error_for_status()?.json().await
}

impl RoleCredentials {
    fn into_credentials(self) -> AwsCredentials {
        AwsCredentials {
            access_key_id: self.access_key_id,
            secret_access_key: self.secret_access_key,
            session_token: self.token.filter(|t| !t.is_empty()),
            expires: self.expiration.as_deref().and_then(|e| humantime::parse_rfc3339_weak(e).ok()),
        }
    }
}

/// The text of the first `<tag>…</tag>` in an AWS query-API (XML) answer, entities decoded.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    let text = xml[start..end].trim();
    Some(text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    expires_at: Option<f64>,
}

#[derive(Deserialize, Default)]
struct AwsError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(default, alias = "Message")]
    message: String,
}

pub struct Ecr {
    settings: EcrSettings,
    timeout: Duration,
    /// Made on first use: most clusters never see an ECR image.
    clients: std::sync::OnceLock<Result<Clients, String>>,
    credentials: Mutex<Option<AwsCredentials>>,
    tokens: Mutex<HashMap<String, (DockerAuth, SystemTime)>>,
    /// One credentials-and-token fetch at a time per registry (AWS throttles GetAuthorizationToken).
    fetches: Gates<String>,
    metrics: Arc<Metrics>,
}

struct Clients {
    /// For the metadata services (IMDS, Pod Identity agent): never through a proxy.
    imds: reqwest::Client,
    /// For the ECR and STS APIs: proxies from the environment apply.
    api: reqwest::Client,
}

impl Clients {
    fn new(timeout: Duration) -> Result<Clients, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("ECR: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let imds = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| format!("ECR: cannot set up the metadata client: {e}"))?;
        let api = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(timeout)
            .timeout(timeout * 2)
            .build()
            .map_err(|e| format!("ECR: cannot set up the API client: {e}"))?;
        Ok(Clients { imds, api })
    }
}

fn fresh(expires: Option<SystemTime>) -> bool {
    expires.is_none_or(|e| e > SystemTime::now() + MARGIN)
}

impl Ecr {
    pub fn new(settings: EcrSettings, timeout: Duration, metrics: Arc<Metrics>) -> Arc<Ecr> {
        Arc::new(Ecr {
            settings,
            timeout,
            clients: std::sync::OnceLock::new(),
            credentials: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            fetches: Gates::default(),
            metrics,
        })
    }

    fn clients(&self) -> Result<&Clients, String> {
        self.clients.get_or_init(|| Clients::new(self.timeout)).as_ref().map_err(Clone::clone)
    }

    /// Basic-auth credentials for `registry` (normalized host), or `None` when it is not a
    /// private ECR registry. Errors say which step failed; they carry no secret.
    pub async fn pull_credentials(&self, registry: &str) -> Option<Result<DockerAuth, String>> {
        let (region, cn) = ecr_region(registry)?;
        let cached = || {
            let token = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(registry).cloned();
            token.filter(|(_, expires)| fresh(Some(*expires))).map(|(auth, _)| auth)
        };
        if let Some(auth) = cached() {
            return Some(Ok(auth));
        }
        let _gate = self.fetches.pass(&registry.to_string()).await;
        if let Some(auth) = cached() {
            return Some(Ok(auth));
        }
        let fetched = self.fetch_token(registry, region, cn).await;
        self.metrics.ecr_token(registry, if fetched.is_ok() { "ok" } else { "error" });
        Some(fetched)
    }

    async fn fetch_token(&self, registry: &str, region: &str, cn: bool) -> Result<DockerAuth, String> {
        let credentials = self.aws_credentials().await?;
        let (auth, expires) = self.authorization_token(registry, region, cn, &credentials).await?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.retain(|_, (_, e)| fresh(Some(*e)));
            tokens.insert(registry.to_string(), (auth.clone(), expires));
        }
        Ok(auth)
    }

    async fn aws_credentials(&self) -> Result<AwsCredentials, String> {
        if let Some(c) = self.credentials.lock().ok().and_then(|r| r.clone())
            && fresh(c.expires)
        {
            return Ok(c);
        }
        let credentials = match &self.settings.source {
            Source::Static(c) => return Ok(c.clone()),
            Source::Disabled => return Err("no AWS credentials: AWS_EC2_METADATA_DISABLED is set and no other source is".into()),
            Source::InstanceRole(base) => self.instance_role(base.trim_end_matches('/')).await?,
            Source::Container { uri, token, token_file } => self.container(uri, token.as_ref(), token_file.as_ref()).await?,
            Source::WebIdentity { token_file, role_arn, session_name, sts } => self.web_identity(token_file, role_arn, session_name, sts).await?,
        };
        if let Ok(mut c) = self.credentials.lock() {
            *c = Some(credentials.clone());
        }
        Ok(credentials)
    }

    /// EKS Pod Identity / ECS: `GET uri` with the agent's token as `Authorization`.
    async fn container(&self, uri: &str, token: Option<&Redacted>, token_file: Option<&PathBuf>) -> Result<AwsCredentials, String> {
        let token = match (token_file, token) {
            (Some(file), _) => Some(std::fs::read_to_string(file).map_err(|e| format!("container credentials: {}: {e}", file.display()))?),
            (None, t) => t.map(|t| t.0.clone()),
        };
        let mut request = self.clients()?.imds.get(uri);
        if let Some(token) = token {
            request = request.header("Authorization", token.trim());
        }
        let answer: RoleCredentials = ok_json(request).await.map_err(|e| format!("container credentials ({uri}): {e}"))?;
        tracing::debug!(uri, "ECR: container credentials read");
        Ok(answer.into_credentials())
    }

    /// IRSA: STS `AssumeRoleWithWebIdentity` (unsigned) with the service-account token.
    async fn web_identity(&self, token_file: &PathBuf, role_arn: &str, session_name: &str, sts: &str) -> Result<AwsCredentials, String> {
        let jwt = std::fs::read_to_string(token_file).map_err(|e| format!("web identity token {}: {e}", token_file.display()))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", role_arn)
            .append_pair("RoleSessionName", session_name)
            .append_pair("WebIdentityToken", jwt.trim())
            .finish();
        let failed = |e: reqwest::Error| format!("STS AssumeRoleWithWebIdentity ({sts}, role {role_arn}): {e}");
        let response =
            self.clients()?.api.post(sts).header("Content-Type", "application/x-www-form-urlencoded").body(body).send().await.map_err(failed)?;
        let status = response.status();
        let text = response.text().await.map_err(failed)?;
        if !status.is_success() {
            let why = [xml_value(&text, "Code"), xml_value(&text, "Message")].into_iter().flatten().collect::<Vec<_>>().join(": ");
            return Err(format!("STS AssumeRoleWithWebIdentity ({sts}, role {role_arn}): {status} {why}").trim_end().to_string());
        }
        let field = |tag: &str| xml_value(&text, tag).ok_or_else(|| format!("STS AssumeRoleWithWebIdentity ({sts}): no {tag} in the answer"));
        tracing::debug!(role_arn, "ECR: web identity credentials obtained");
        Ok(AwsCredentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: xml_value(&text, "SessionToken"),
            expires: xml_value(&text, "Expiration").and_then(|e| humantime::parse_rfc3339_weak(&e).ok()),
        })
    }

    /// The instance role's credentials through IMDSv2.
    async fn instance_role(&self, base: &str) -> Result<AwsCredentials, String> {
        let step = |what: &'static str| move |e: reqwest::Error| format!("instance metadata ({base}): {what}: {e}");
        let imds = &self.clients()?.imds;
        let session = imds.put(format!("{base}/latest/api/token")).header("X-aws-ec2-metadata-token-ttl-seconds", "21600");
        let token = ok_text(session).await.map_err(step("session token"))?;
        let get = |path: String| imds.get(format!("{base}{path}")).header("X-aws-ec2-metadata-token", token.trim());
        let roles = ok_text(get("/latest/meta-data/iam/security-credentials/".into()))
            .await
            .map_err(step("instance role (does the node have an instance profile?)"))?;
        let role = roles.lines().map(str::trim).find(|l| !l.is_empty()).ok_or_else(|| format!("instance metadata ({base}): no instance role"))?;
        let answer: RoleCredentials =
            ok_json(get(format!("/latest/meta-data/iam/security-credentials/{role}"))).await.map_err(step("role credentials"))?;
        if let Some(code) = answer.code.as_deref().filter(|c| *c != "Success") {
            return Err(format!("instance metadata ({base}): credentials of role {role}: {code}"));
        }
        tracing::debug!(role, "ECR: instance role credentials read");
        Ok(answer.into_credentials())
    }

    async fn authorization_token(
        &self,
        registry: &str,
        region: &str,
        cn: bool,
        credentials: &AwsCredentials,
    ) -> Result<(DockerAuth, SystemTime), String> {
        let endpoint = match &self.settings.api_endpoint {
            Some(e) => e.clone(),
            None => format!("https://api.ecr.{region}.amazonaws.com{}/", if cn { ".cn" } else { "" }),
        };
        let url = url::Url::parse(&endpoint).map_err(|e| format!("ECR endpoint {endpoint}: {e}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(format!("ECR endpoint {endpoint}: no host")),
        };
        let date = amz_date(SystemTime::now());
        let body = b"{}";
        let mut headers = vec![("content-type", CONTENT_TYPE), ("host", host.as_str()), ("x-amz-date", date.as_str()), ("x-amz-target", TARGET)];
        if let Some(token) = &credentials.session_token {
            headers.push(("x-amz-security-token", token.as_str()));
        }
        let request = Request { method: "POST", path: url.path(), headers: &headers, body, amz_date: &date, region, service: "ecr" };
        let authorization = sign(&request, credentials);
        let mut post = self.clients()?.api.post(url.clone()).header("authorization", authorization).body(&body[..]);
        for (name, value) in headers.iter().filter(|(n, _)| *n != "host") {
            post = post.header(*name, *value);
        }
        let failed = |e: reqwest::Error| format!("ECR GetAuthorizationToken ({endpoint}): {e}");
        let response = post.send().await.map_err(failed)?;
        let status = response.status();
        let text = response.text().await.map_err(failed)?;
        if !status.is_success() {
            let error: AwsError = serde_json::from_str(&text).unwrap_or_default();
            return Err(format!("ECR GetAuthorizationToken ({endpoint}): {status}: {} {}", error.kind, error.message).trim_end().to_string());
        }
        let answer: TokenAnswer =
            serde_json::from_str(&text).map_err(|e| format!("ECR GetAuthorizationToken ({endpoint}): unexpected answer: {e}"))?;
        let data = answer.authorization_data.into_iter().next().ok_or_else(|| format!("ECR GetAuthorizationToken ({endpoint}): no token"))?;
        let decoded = STANDARD.decode(data.authorization_token.trim()).ok().and_then(|d| String::from_utf8(d).ok());
        let (username, password) = decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .ok_or_else(|| format!("ECR GetAuthorizationToken ({endpoint}): the token is not base64 of user:password"))?;
        // ECR tokens last 12 hours.
        let expires = data
            .expires_at
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(SystemTime::now() + Duration::from_secs(12 * 3600), |s| UNIX_EPOCH + Duration::from_secs_f64(s));
        tracing::debug!(registry, "ECR: authorization token obtained");
        Ok((DockerAuth { registry: registry.to_string(), username, password: password.into() }, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
            expires: None,
        }
    }

    #[test]
    fn aws_test_vector_get_vanilla() {
        // From AWS's SigV4 test suite (get-vanilla).
        let request = Request {
            method: "GET",
            path: "/",
            headers: &[("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
            body: b"",
            amz_date: "20150830T123600Z",
            region: "us-east-1",
            service: "service",
        };
        assert_eq!(
            sign(&request, &example(None)),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn get_authorization_token_as_botocore_signs_it() {
        // The same request signed by botocore's SigV4Auth (1.43), session token included.
        let headers = [
            ("x-amz-target", TARGET),
            ("content-type", CONTENT_TYPE),
            ("host", "api.ecr.us-east-1.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-security-token", "session-token"),
        ];
        let request =
            Request { method: "POST", path: "/", headers: &headers, body: b"{}", amz_date: "20150830T123600Z", region: "us-east-1", service: "ecr" };
        let signed = sign(&request, &example(Some("session-token")));
        assert!(
            signed.ends_with(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature=8102772839ac0eddeaadc71c776a7ea98f9507dcefa6da58d36088a9d49c6943"
            ),
            "{signed}"
        );
        assert!(!format!("{:?}", example(None)).contains("EXAMPLEKEY"));
    }

    #[test]
    fn credential_sources_in_sdk_order() {
        let source = |vars: &[(&str, &str)]| Source::read(&mut Reader::new(vars));
        let irsa = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_REGION", "eu-central-1"),
        ];
        let keys = [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "very-secret")];
        let all: Vec<_> = keys.iter().chain(&irsa).copied().collect();
        assert!(matches!(source(&all), Source::Static(c) if c.access_key_id == "AKID"));
        assert!(!format!("{:?}", source(&all)).contains("very-secret"));
        match source(&irsa) {
            Source::WebIdentity { sts, session_name, .. } => {
                assert_eq!((sts.as_str(), session_name.as_str()), ("https://sts.eu-central-1.amazonaws.com", "vault-secrets-webhook"))
            }
            other => panic!("{other:?}"),
        }
        let pod_identity =
            [("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok3n")];
        assert!(matches!(source(&pod_identity), Source::Container { uri, .. } if uri.ends_with("/v1/credentials")));
        assert!(!format!("{:?}", source(&pod_identity)).contains("tok3n"));
        assert!(
            matches!(source(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c")]), Source::Container { uri, .. } if uri == "http://169.254.170.2/v2/c")
        );
        assert!(matches!(source(&[]), Source::InstanceRole(e) if e == "http://169.254.169.254"));
        assert!(matches!(source(&[("AWS_EC2_METADATA_DISABLED", "true")]), Source::Disabled));
    }

    #[test]
    fn sts_answers() {
        let ok = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <SessionToken>tok&amp;en</SessionToken><AccessKeyId>ASIA1</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_value(ok, "SessionToken").as_deref(), Some("tok&en"));
        assert_eq!(xml_value(ok, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_value(ok, "Expiration"), None);
        assert_eq!(xml_value("<Code>x", "Code"), None);
    }

    #[test]
    fn ecr_hosts() {
        assert_eq!(ecr_region("123456789012.dkr.ecr.us-east-1.amazonaws.com"), Some(("us-east-1", false)));
        assert_eq!(ecr_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com:443"), Some(("us-gov-west-1", false)));
        assert_eq!(ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"), Some(("cn-north-1", true)));
        for other in [
            "public.ecr.aws",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
            "docker.io",
            "123456789012.dkr.ecr..amazonaws.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ] {
            assert_eq!(ecr_region(other), None, "{other}");
        }
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_440_938_160)), "20150830T123600Z");
    }
}
