//! Image ENTRYPOINT/CMD lookup (Bank-Vaults' `pkg/webhook/registry.go`) for mutated containers without `command`.
//!
//! Differences from Bank-Vaults, on purpose: multi-platform images resolve to the pod's platform
//! (its `kubernetes.io/os`/`arch` node selector, else `REGISTRY_DEFAULT_PLATFORM`) instead of the
//! first entry; every matching credential is tried in turn; the cache is bounded, expires, and is
//! keyed by image, platform and credentials (never shared across pull secrets); one `oci-client`
//! per lookup, because a client keeps the first credential it sees per registry.

pub mod pull_secrets;
pub mod acr;
pub mod reference;
pub mod cloud;
pub mod ecr;
pub mod gcr;

pub use pull_secrets::{DefaultPullSecret, DockerAuth, normalize_registry, parse_pull_secret};

use crate::fetch::cache::{Cached, Got};
use crate::metrics::Metrics;
use crate::mutate::pod::ImageCommand;
use acr::{Acr, AcrSettings};
use ecr::{Ecr, EcrSettings};
use gcr::{GcpSettings, Gcr};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::ImageIndexEntry;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vault_env::cloud::CloudError;

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_string();
        let arch = parts.next().filter(|p| !p.is_empty())?.to_string();
        let variant = parts.next().map(str::to_string);
        Some(Platform { os, arch, variant })
    }

    fn matches(&self, entry: &ImageIndexEntry) -> bool {
        entry.platform.as_ref().is_some_and(|p| {
            p.os.to_string() == self.os
                && p.architecture.to_string() == self.arch
                && (self.variant.is_none() || p.variant.as_deref() == self.variant.as_deref())
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.variant {
            Some(v) => write!(f, "{}/{}/{v}", self.os, self.arch),
            None => write!(f, "{}/{}", self.os, self.arch),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("image {image} (registry {registry}): {why}")]
pub struct RegistryError {
    pub image: String,
    pub registry: String,
    pub why: LookupError,
}

/// Why an image's ENTRYPOINT/CMD could not be read. The texts say what happened (refused, not
/// found, not an image, not reached), never how a connection failed: that detail is logged only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    #[error("not a valid image reference: {0}")]
    BadReference(String),
    /// The registry answered: it refused the credentials, has no such image or platform, or sent
    /// something that is not an image.
    #[error("{0}")]
    Refused(String),
    /// No answer over any scheme tried (`https: …; http: …`).
    #[error("{0}")]
    Unreachable(String),
    /// Either of those, tried anonymously after the webhook's own cloud identity gave no token.
    #[error("{error} (tried anonymously: {cloud})")]
    Anonymous { error: Box<LookupError>, cloud: String },
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    config: Option<ContainerConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
}

pub fn image_command_from_config(json: &str) -> Result<ImageCommand, LookupError> {
    let config: ImageConfig = serde_json::from_str(json).map_err(|e| LookupError::Refused(format!("the image config is not valid JSON: {e}")))?;
    let c = config.config.unwrap_or_default();
    Ok(ImageCommand { entrypoint: c.entrypoint.unwrap_or_default(), cmd: c.cmd.unwrap_or_default() })
}

/// Registries on loopback are reached over plain HTTP, as go-containerregistry does.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The same image on another registry (a mirror): same repository, tag and digest.
fn on_registry(r: &Reference, registry: &str) -> Reference {
    let (registry, repository) = (registry.to_string(), r.repository().to_string());
    match (r.tag(), r.digest()) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into()),
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
    }
}

/// `REGISTRY_MIRRORS`: `registry=mirror` pairs, comma-separated (`docker.io=mirror.local:5000`).
pub fn parse_mirrors(text: &str) -> Option<Vec<(String, String)>> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (from, to) = e.split_once('=')?;
            let (from, to) = (normalize_registry(from.trim()), to.trim().trim_end_matches('/'));
            let host_ok = |h: &str| !h.is_empty() && !h.contains(['/', '@', ' ', '?', '#']);
            (host_ok(&from) && host_ok(to)).then(|| (from, to.to_ascii_lowercase()))
        })
        .collect()
}

/// Bank-Vaults' rule: `:latest` (or no tag) and `imagePullPolicy: Always` may change any time.
pub fn cacheable(reference: &Reference, pull_policy: Option<&str>) -> bool {
    pull_policy != Some("Always") && (reference.digest().is_some() || reference.tag().is_some_and(|t| t != "latest"))
}

type CacheKey = (String, String, u64);

pub struct Registry {
    cache: Cached<CacheKey, ImageCommand>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// Credentials for private ECR, GCR/Artifact Registry and ACR registries the pod has no pull
    /// secret for, from the webhook's own cloud identity.
    ecr: Arc<Ecr>,
    gcr: Gcr,
    acr: Acr,
    cloud_identity: bool,
    mirrors: Vec<(String, String)>,
    own_credentials: Vec<DockerAuth>,
}

pub struct Lookup<'a> {
    pub image: &'a str,
    pub pull_policy: Option<&'a str>,
    pub credentials: &'a [DockerAuth],
    pub platform: &'a Platform,
    pub skip_verify: bool,
}

/// Image lookups: the cache, timeouts, platform, default credentials and ECR.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub cache_size: usize,
    pub cache_ttl: Duration,
    /// How long pull credentials (pull secrets and ServiceAccount reads) are reused.
    pub credentials_ttl: Duration,
    pub timeout: Duration,
    /// Picked from multi-platform images when the pod does not say.
    pub default_platform: Platform,
    pub default_pull_secret: Option<DefaultPullSecret>,
    pub ecr: EcrSettings,
    pub gcp: GcpSettings,
    pub acr: AcrSettings,
    /// `REGISTRY_CLOUD_IDENTITY`: read private ECR, GCR/Artifact Registry and ACR images the pod
    /// has no pull secret for with the webhook's own cloud identity. Off: only the pod's pull
    /// secrets (and the default one) are used, so no pod author learns the ENTRYPOINT/CMD of an
    /// image only the webhook may read; such pods must then set `command` or a pull secret.
    pub cloud_identity: bool,
    /// `REGISTRY_MIRRORS`: (registry, mirror) pairs, registries normalised (`docker.io`): an
    /// image of that registry is read from the mirror (the pod's image is not changed).
    pub mirrors: Vec<(String, String)>,
    /// The webhook's own docker config (`DOCKER_CONFIG`/config.json, else
    /// `~/.docker/config.json`), tried after the pod's pull secrets (go-containerregistry's
    /// default keychain in Bank-Vaults).
    pub own_credentials: Vec<DockerAuth>,
}

impl Default for RegistrySettings {
    /// Bank-Vaults' defaults; no ECR credentials.
    fn default() -> Self {
        RegistrySettings {
            cache_size: 1024,
            cache_ttl: Duration::from_secs(3600),
            credentials_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            default_platform: Platform { os: "linux".into(), arch: "amd64".into(), variant: None },
            default_pull_secret: None,
            ecr: EcrSettings { source: ecr::CredentialSource::Disabled, api_endpoint: None, public_endpoint: None },
            gcp: GcpSettings { endpoints: vault_env::cloud::gcp::GcpEndpoints::new(None, None), key_file: None },
            acr: AcrSettings {
                source: acr::AadSource::ManagedIdentity(vault_env::cloud::azure::Imds::new(None, None)),
                authority: acr::DEFAULT_AUTHORITY.into(),
            },
            cloud_identity: true,
            mirrors: Vec::new(),
            own_credentials: Vec::new(),
        }
    }
}

impl Registry {
    pub fn new(settings: &RegistrySettings, metrics: Arc<Metrics>) -> Registry {
        let ecr = Ecr::new(settings.ecr.clone(), settings.timeout, metrics.clone());
        let gcr = Gcr::new(settings.gcp.clone(), settings.timeout, metrics.clone());
        let acr = Acr::new(settings.acr.clone(), settings.timeout, metrics.clone());
        let cache = Cached::new(settings.cache_size, settings.cache_ttl);
        Registry {
            cache,
            timeout: settings.timeout,
            metrics,
            ecr,
            gcr,
            acr,
            cloud_identity: settings.cloud_identity,
            mirrors: settings.mirrors.clone(),
            own_credentials: settings.own_credentials.clone(),
        }
    }

    pub async fn image_command(&self, lookup: &Lookup<'_>) -> Result<ImageCommand, RegistryError> {
        let started = Instant::now();
        let reference = reference::parse(lookup.image).map_err(|e| RegistryError {
            image: lookup.image.into(),
            registry: "?".into(),
            why: LookupError::BadReference(e.to_string()),
        })?;
        let mut registry = reference.registry().to_string();
        let mirror = self.mirrors.iter().find(|(from, _)| *from == normalize_registry(&registry)).map(|(_, to)| to.clone());
        let reference = match &mirror {
            Some(m) => {
                registry = format!("{registry} via mirror {m}");
                on_registry(&reference, m)
            }
            None => reference,
        };
        let error = |why: LookupError| RegistryError { image: lookup.image.into(), registry: registry.clone(), why };
        let wanted = normalize_registry(reference.registry());
        let candidates: Vec<&DockerAuth> = lookup.credentials.iter().chain(&self.own_credentials).filter(|c| c.registry == wanted).collect();
        let key = {
            let mut h = DefaultHasher::new();
            candidates.hash(&mut h);
            lookup.skip_verify.hash(&mut h);
            (lookup.image.to_string(), lookup.platform.to_string(), h.finish())
        };
        // The same image for many pods at once: one registry read, the others wait for it.
        let read = async || self.read(&reference, lookup, &candidates, &wanted).await;
        let got = match cacheable(&reference, lookup.pull_policy) {
            true => self.cache.get_or_fetch(&key, read).await,
            false => read().await.map(Got::Fetched),
        };
        let (outcome, result) = match got {
            Ok(Got::Cached(command)) => ("cached", Ok(command)),
            Ok(Got::Fetched(command)) => ("ok", Ok(command)),
            Err(why) => ("error", Err(error(why))),
        };
        self.metrics.registry_call(&registry, outcome, started.elapsed());
        result
    }

    /// The webhook's own credentials for a private ECR, GCR/Artifact Registry or ACR registry,
    /// with what they are for errors; `None` for other registries.
    async fn cloud_credentials(&self, registry: &str) -> Option<(&'static str, Result<DockerAuth, CloudError>)> {
        if !self.cloud_identity {
            return None;
        }
        if let Some(got) = self.ecr.pull_credentials(registry).await {
            return Some(("no ECR token with the webhook's AWS credentials", got));
        }
        if let Some(got) = self.gcr.pull_credentials(registry).await {
            return Some(("no Google access token with the webhook's identity", got));
        }
        let got = self.acr.pull_credentials(registry).await?;
        Some(("no ACR token with the webhook's Azure identity", got))
    }

    /// Reads the image's config with each matching credential in turn; with none for a private
    /// ECR, GCR/Artifact Registry or ACR registry, a token with the webhook's own cloud
    /// identity, else anonymously.
    async fn read(&self, reference: &Reference, lookup: &Lookup<'_>, candidates: &[&DockerAuth], wanted: &str) -> Result<ImageCommand, LookupError> {
        let mut cloud_failed = None;
        let auths: Vec<RegistryAuth> = match candidates.is_empty() {
            false => candidates.iter().map(|c| RegistryAuth::Basic(c.username.clone(), c.password.expose().to_string())).collect(),
            true => match self.cloud_credentials(wanted).await {
                Some((_, Ok(c))) => vec![RegistryAuth::Basic(c.username, c.password.expose().to_string())],
                Some((what, Err(e))) => {
                    tracing::warn!(registry = %reference.registry(), "{what}: {e}");
                    cloud_failed = Some(format!("{what}: {e}"));
                    vec![RegistryAuth::Anonymous]
                }
                None => vec![RegistryAuth::Anonymous],
            },
        };
        let mut last = LookupError::Unreachable(String::new());
        for auth in auths {
            match self.fetch(reference, &auth, lookup).await {
                Ok(command) => return Ok(command),
                Err(e) => last = e,
            }
        }
        Err(match cloud_failed {
            Some(cloud) => LookupError::Anonymous { error: Box::new(last), cloud },
            None => last,
        })
    }

    /// HTTPS; for loopback registries plain HTTP after that, as go-containerregistry does.
    async fn fetch(&self, reference: &Reference, auth: &RegistryAuth, lookup: &Lookup<'_>) -> Result<ImageCommand, LookupError> {
        let protocols = match is_loopback(reference.registry()) {
            true => vec![ClientProtocol::Https, ClientProtocol::Http],
            false => vec![ClientProtocol::Https],
        };
        let mut errors = Vec::new();
        for protocol in protocols {
            let scheme = if protocol == ClientProtocol::Http { "http" } else { "https" };
            match self.fetch_with(reference, auth, lookup, protocol).await {
                Ok(command) => return Ok(command),
                // The registry answered and refused: another scheme won't help.
                Err(Failure::Refused(why)) if errors.is_empty() => return Err(LookupError::Refused(why)),
                Err(Failure::Refused(why)) => {
                    errors.push(format!("{scheme}: {why}"));
                    return Err(LookupError::Refused(errors.join("; ")));
                }
                Err(Failure::Unreachable(why)) => errors.push(format!("{scheme}: {why}")),
            }
        }
        Err(LookupError::Unreachable(errors.join("; ")))
    }

    /// One try with one scheme.
    async fn fetch_with(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        lookup: &Lookup<'_>,
        protocol: ClientProtocol,
    ) -> Result<ImageCommand, Failure> {
        let platform = lookup.platform.clone();
        let config = ClientConfig {
            protocol,
            accept_invalid_certificates: lookup.skip_verify,
            platform_resolver: Some(Box::new(move |entries: &[ImageIndexEntry]| {
                entries.iter().find(|e| platform.matches(e)).map(|e| e.digest.clone())
            })),
            read_timeout: Some(self.timeout),
            connect_timeout: Some(self.timeout),
            ..ClientConfig::default()
        };
        let client = Client::new(config);
        let pulled = tokio::time::timeout(self.timeout * 3, client.pull_manifest_and_config(reference, auth))
            .await
            .map_err(|_| Failure::Unreachable("the registry could not be reached (the webhook's log has the detail)".into()))?;
        let (_, _, config) = pulled.map_err(|e| match answered(&e) {
            true => Failure::Refused(describe(&e, lookup.platform)),
            false => Failure::Unreachable(describe(&e, lookup.platform)),
        })?;
        image_command_from_config(&config).map_err(|e| Failure::Refused(e.to_string()))
    }
}

/// Why one try failed; decides whether another scheme is tried.
enum Failure {
    /// The registry answered (and refused, or sent something unusable): no fallback.
    Refused(String),
    /// No answer (connection, TLS, timeout): plain HTTP may still work for a loopback registry.
    Unreachable(String),
}

fn answered(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    !matches!(e, E::RequestError(_) | E::GenericError(_) | E::IoError(_))
}

fn describe(e: &oci_client::errors::OciDistributionError, platform: &Platform) -> String {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => format!("the registry refused the credentials: {e}"),
        E::ImageIndexParsingNoPlatformResolverError => format!("no {platform} image in the index: {e}"),
        E::ImageManifestNotFoundError(m) if m.contains("platform") => format!("the image index has no {platform} image"),
        E::ImageManifestNotFoundError(_) => "the image was not found".into(),
        _ => {
            // The detail (connection refused, TLS, timeout, what a non-registry answered) goes to
            // the log only: in a denial it would tell any pod author what listens where.
            tracing::warn!(error = %error_chain(e), "image lookup failed");
            match answered(e) {
                true => "the registry's answer is not an image (the webhook's log has the detail)".into(),
                false => "the registry could not be reached (the webhook's log has the detail)".into(),
            }
        }
    }
}

/// The error and its sources: "error sending request" alone says nothing.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a denial says keeps its shape: the kind of failure, and the cloud token's failure after it.
    #[test]
    fn lookup_errors_read_as_before() {
        let refused = LookupError::Refused("the registry refused the credentials: 401".into());
        let anonymous =
            LookupError::Anonymous { error: Box::new(refused.clone()), cloud: "no ECR token with the webhook's AWS credentials: ECR: 403".into() };
        assert_eq!(
            anonymous.to_string(),
            "the registry refused the credentials: 401 (tried anonymously: no ECR token with the webhook's AWS credentials: ECR: 403)"
        );
        let e = RegistryError { image: "r.example/app:1".into(), registry: "r.example".into(), why: refused };
        assert_eq!(e.to_string(), "image r.example/app:1 (registry r.example): the registry refused the credentials: 401");
        assert!(matches!(image_command_from_config("["), Err(LookupError::Refused(t)) if t.starts_with("the image config is not valid JSON")));
    }

    #[test]
    fn mirrors_move_the_image_not_its_name() {
        let mirrors = parse_mirrors("docker.io=127.0.0.1:5001, GHCR.io = mirror.local/").unwrap();
        assert_eq!(mirrors, [("docker.io".to_string(), "127.0.0.1:5001".to_string()), ("ghcr.io".into(), "mirror.local".into())]);
        assert_eq!(parse_mirrors("docker.io"), None);
        assert_eq!(parse_mirrors("docker.io=a/b"), None);
        let r = reference::parse("nginx:1.27").unwrap();
        let m = on_registry(&r, "127.0.0.1:5001");
        assert_eq!((m.registry(), m.repository(), m.tag()), ("127.0.0.1:5001", "library/nginx", Some("1.27")));
        let r = reference::parse("ghcr.io/a/b@sha256:0123456789012345678901234567890123456789012345678901234567890123").unwrap();
        assert_eq!(on_registry(&r, "m").digest(), r.digest());
    }

    #[test]
    fn registries() {
        assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_registry("http://Reg.Example:5000/x"), "reg.example:5000");
        for (r, loopback) in [
            ("127.0.0.1:5000", true),
            ("localhost:5000", true),
            ("localhost", true),
            ("[::1]:5000", true),
            ("127.1.2.3", true),
            ("ghcr.io", false),
            ("10.0.0.1:5000", false),
            ("localhost.evil.com", false),
        ] {
            assert_eq!(is_loopback(r), loopback, "{r}");
        }
    }

    #[test]
    fn caching_rule() {
        // Bank-Vaults' TestIsAllowedToCache, plus digests.
        let r = |s: &str| reference::parse(s).unwrap();
        assert!(cacheable(&r("foo:bar"), None));
        assert!(!cacheable(&r("foo"), None));
        assert!(!cacheable(&r("foo:latest"), None));
        assert!(!cacheable(&r("foo:bar"), Some("Always")));
        assert!(cacheable(&r("foo@sha256:0000000000000000000000000000000000000000000000000000000000000000"), None));
    }

    #[test]
    fn image_configs() {
        let cmd = image_command_from_config(r#"{"architecture":"amd64","config":{"Entrypoint":["/bin/app"],"Cmd":["--flag"]}}"#).unwrap();
        assert_eq!(cmd, ImageCommand { entrypoint: vec!["/bin/app".into()], cmd: vec!["--flag".into()] });
        let only = image_command_from_config(r#"{"config":{"Entrypoint":null,"Cmd":["sh"]}}"#).unwrap();
        assert_eq!(only, ImageCommand { entrypoint: vec![], cmd: vec!["sh".into()] });
        assert_eq!(image_command_from_config("{}").unwrap(), ImageCommand::default());
        assert!(image_command_from_config("[").is_err());
    }

    #[test]
    fn platforms() {
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/amd64").unwrap().variant, None);
        assert!(Platform::parse("linux").is_none() && Platform::parse("/amd64").is_none());
    }
}
