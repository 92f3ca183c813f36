//! The webhook's own Vault access, for Secrets, ConfigMaps and custom objects (pods log in for
//! themselves, through vault-env).
//!
//! The client settings are the webhook's own `VAULT_*` environment as vault-env reads it, with
//! the object's annotations on top. The token: with `vault-serviceaccount`, a login as that
//! ServiceAccount of the object's namespace; otherwise `VAULT_TOKEN_FILE`/`VAULT_TOKEN` if set,
//! else a login with the webhook's own service-account JWT. One session (client and token) is
//! kept per address, TLS trust, Vault namespace, auth method, mount, role and identity — what
//! changes the token, normalised, so that spellings and timeouts make no new login — and reused
//! until two thirds of the token's TTL have passed (Bank-Vaults logs in on every admission and
//! never revokes). Sessions are bounded: at most [`MAX_SESSIONS`], and one unused for
//! [`SESSION_IDLE`] is dropped; a dropped session's token is revoked. A replaced token is kept
//! (values resolved with it may hold its leases) until it expires, at most [`MAX_RETIRED`] of
//! them. Tokens the webhook still holds are revoked on shutdown, all at once within 5 s.

use crate::annotations::ObjectConfig;
use crate::fetch::kube::{ApiError, KubeApi};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vault_env::SecretString;
use vault_env::auth::{self, TokenSource};
use vault_env::client::Client;
use vault_env::config::{AuthMethod, CloudAuth, Config, Transit};
use vault_env::resolve::{self, Cause, Plan, Resolved, VarError};

const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Why an object's references could not be resolved: the step (the CA of `vault-tls-secret`, the
/// client, the login, the reads) and what it named. Never a secret value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectVaultError {
    #[error("vault-tls-secret {name}: the webhook's namespace is unknown (set KUBERNETES_NAMESPACE; {SA_NAMESPACE_FILE}: {cause})")]
    UnknownNamespace { name: String, cause: String },
    #[error("vault-tls-secret: {0}")]
    TlsSecret(ApiError),
    #[error("vault-tls-secret: secret {namespace}/{name} has no ca.crt")]
    NoCa { namespace: String, name: String },
    #[error("Vault client for {addr}: {cause}")]
    Client { addr: String, cause: String },
    /// The token of the object's `vault-serviceaccount` could not be had.
    #[error("{0}")]
    ServiceAccountToken(ApiError),
    #[error("login to {addr} at auth/{mount} as role {role:?} for serviceaccount {service_account}: {cause}")]
    Login { addr: String, mount: String, role: String, service_account: String, cause: String },
    #[error("the webhook's Vault token for {addr}: {cause}")]
    Token { addr: String, cause: String },
    #[error("Vault did not answer within {0:?} (vault-client-timeout)")]
    TimedOut(Duration),
    /// References that could not be resolved, each naming its variable and reference.
    #[error("{}", vault_env::config::reader::join(.0))]
    Values(Vec<VarError>),
}

/// Whose token reads the object's secrets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Identity {
    Webhook,
    ServiceAccount { namespace: String, name: String },
}

/// One session per Vault target and identity: what changes the token, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    addr: String,
    skip_verify: bool,
    tls_secret: String,
    namespace: String,
    auth_method: String,
    mount: String,
    role: String,
    identity: Identity,
}

struct VaultSession {
    client: Client,
    /// When to log in again; `None` for tokens that were given (they are not ours to replace).
    renew_after: Option<Instant>,
    /// When the token ends on its own (`None`: unknown or never).
    expires: Option<Instant>,
    /// Obtained by a login, so revoked when dropped and on shutdown.
    revocable: bool,
}

/// A session and when it was last used.
struct SessionEntry {
    slot: SessionSlot,
    used: Instant,
}

type SessionSlot = Arc<tokio::sync::Mutex<Option<Arc<VaultSession>>>>;

/// The most bytes of resolved values one object may get: a Secret or ConfigMap holds at most
/// 1 MiB, and without a bound one small object of many templates over one path rendered hundreds
/// of megabytes.
pub const MAX_OBJECT_VALUES: usize = 1024 * 1024;

/// At most this many sessions (distinct targets and identities) at once; the least recently used
/// is dropped, and its token revoked, to make room.
pub const MAX_SESSIONS: usize = 64;
/// A session unused for this long is dropped and its token revoked.
pub const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
/// Replaced tokens kept until they expire; beyond this the oldest is revoked.
pub const MAX_RETIRED: usize = 64;
/// Failed logins remembered at once (each for [`FAILED_LOGIN_BACKOFF`]).
const MAX_FAILED_LOGINS: usize = 256;

/// The webhook's own Vault client settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// vault-env's reading of the webhook's environment (TLS, token, retries, proxy, …); each
    /// object's annotations override the address, mount, role and the rest.
    pub base: Config,
    /// `KUBERNETES_NAMESPACE`: where `vault-tls-secret` is read (else the namespace of the
    /// webhook's service account).
    pub own_namespace: Option<String>,
    /// What each cloud login method needs, from the webhook's environment.
    pub clouds: Vec<(AuthMethod, CloudAuth)>,
}

pub struct VaultAccess {
    settings: VaultSettings,
    sessions: Mutex<HashMap<SessionKey, SessionEntry>>,
    retired: Mutex<Vec<Arc<VaultSession>>>,
    failed_logins: Mutex<HashMap<SessionKey, (Instant, ObjectVaultError)>>,
    metrics: Arc<Metrics>,
}

/// How long a failed login is answered from memory before it is tried again.
const FAILED_LOGIN_BACKOFF: Duration = Duration::from_secs(5);

impl VaultAccess {
    pub fn new(settings: VaultSettings, metrics: Arc<Metrics>) -> VaultAccess {
        VaultAccess {
            settings,
            sessions: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            failed_logins: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The client settings for an object: the webhook's, with the object's annotations on top.
    async fn client_config(&self, config: &ObjectConfig, kube: &KubeApi) -> Result<Config, ObjectVaultError> {
        let v = &config.vault;
        let mut c = self.settings.base.clone();
        c.addr = v.addr.trim_end_matches('/').to_string();
        c.tls.skip_verify = v.skip_verify;
        c.auth.method = config.auth_method;
        if let Some((_, cloud)) = self.settings.clouds.iter().find(|(m, _)| *m == config.auth_method) {
            c.auth.cloud = cloud.clone();
        }
        c.auth.mount = v.path.trim_matches('/').to_string();
        c.auth.role = v.role.clone();
        c.namespace = Some(v.namespace.trim().trim_matches('/').to_string()).filter(|n| !n.is_empty());
        // Each request's bound is the webhook's own VAULT_CLIENT_TIMEOUT (one client serves every
        // object of the session); an object's vault-client-timeout bounds its whole resolution.
        if !v.tls_secret.is_empty() {
            c.tls.ca.pem = Some(self.ca_from_secret(&v.tls_secret, kube).await?);
        }
        Ok(c)
    }

    /// Fetches and renders `plan` for an object. A reused token that is refused is checked with
    /// `lookup-self`: only when the token itself is no longer valid (revoked behind the webhook's
    /// back) is it dropped and the resolution tried once more with a new login; a path its policy
    /// denies is just a denial (a new login per denied read would leave one live token each).
    pub async fn resolve(&self, config: &ObjectConfig, namespace: &str, kube: &KubeApi, plan: &Plan) -> Result<Resolved, ObjectVaultError> {
        let key = session_key(config, namespace);
        let mut fresh = false;
        loop {
            let (session, reused) = self.session(&key, config, kube).await?;
            let budget = config.vault.client_timeout.max(Duration::from_millis(1));
            let Ok(fetched) = tokio::time::timeout(budget, resolve::fetch(&session.client, plan, &transit(config))).await else {
                return Err(ObjectVaultError::TimedOut(budget));
            };
            let result = resolve::render_bounded(plan, &fetched, config.vault.ignore_missing_secrets, MAX_OBJECT_VALUES);
            match result {
                Err(errors)
                    if reused
                        && !fresh
                        && errors.iter().any(|e| matches!(&e.cause, Cause::Vault(c) if c.is_denied()))
                        && session.client.impatient().lookup_self().await.is_err_and(|e| e.is_denied()) =>
                {
                    tracing::info!(addr = %key.addr, role = %key.role, "the reused Vault token is no longer valid; logging in again");
                    self.forget(&key, &session).await;
                    fresh = true;
                }
                Err(errors) => return Err(ObjectVaultError::Values(errors)),
                Ok(resolved) => return Ok(resolved),
            }
        }
    }

    /// The session slot for `key`, made if need be. Sessions idle for [`SESSION_IDLE`], and the
    /// least recently used beyond [`MAX_SESSIONS`], are dropped here and their tokens revoked.
    fn slot(&self, key: &SessionKey) -> SessionSlot {
        let now = Instant::now();
        let mut dropped = Vec::new();
        let slot = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = sessions.get_mut(key) {
                entry.used = now;
                return entry.slot.clone();
            }
            sessions.retain(|_, e| {
                let keep = now.duration_since(e.used) < SESSION_IDLE;
                if !keep {
                    dropped.push(e.slot.clone());
                }
                keep
            });
            while sessions.len() >= MAX_SESSIONS {
                let Some(oldest) = sessions.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else { break };
                dropped.extend(sessions.remove(&oldest).map(|e| e.slot));
            }
            sessions.entry(key.clone()).or_insert_with(|| SessionEntry { slot: SessionSlot::default(), used: now }).slot.clone()
        };
        for slot in dropped {
            tokio::spawn(async move {
                if let Some(session) = slot.lock().await.take() {
                    revoke(&[session]).await;
                }
            });
        }
        slot
    }

    /// How many sessions are held now (for tests and metrics).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn forget(&self, key: &SessionKey, session: &Arc<VaultSession>) {
        let slot = self.slot(key);
        let mut current = slot.lock().await;
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
            *current = None;
        }
    }

    /// The session for `key`: the cached one while its token is fresh, else a new login.
    async fn session(&self, key: &SessionKey, config: &ObjectConfig, kube: &KubeApi) -> Result<(Arc<VaultSession>, bool), ObjectVaultError> {
        let slot = self.slot(key);
        let mut current = slot.lock().await;
        if let Some(s) = current.as_ref()
            && s.renew_after.is_none_or(|t| Instant::now() < t)
        {
            return Ok((s.clone(), true));
        }
        // A login that just failed is not tried again for every admission.
        if let Some((at, why)) = self.failed_logins.lock().unwrap_or_else(|p| p.into_inner()).get(key)
            && at.elapsed() < FAILED_LOGIN_BACKOFF
        {
            return Err(why.clone());
        }
        let session = match self.login(key, config, kube).await {
            Ok(s) => Arc::new(s),
            Err(why) => {
                let mut failed = self.failed_logins.lock().unwrap_or_else(|p| p.into_inner());
                failed.retain(|_, (at, _)| at.elapsed() < FAILED_LOGIN_BACKOFF);
                if failed.len() < MAX_FAILED_LOGINS {
                    failed.insert(key.clone(), (Instant::now(), why.clone()));
                }
                return Err(why);
            }
        };
        self.failed_logins.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if let Some(old) = current.replace(session.clone())
            && old.revocable
        {
            // Still valid for a third of its TTL, and secrets resolved with it may hold its leases:
            // kept until it expires (or, beyond MAX_RETIRED, revoked oldest first).
            let evicted = {
                let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                retired.retain(|s| s.expires.is_none_or(|e| e > now));
                retired.push(old);
                let excess = retired.len().saturating_sub(MAX_RETIRED);
                retired.drain(..excess).collect::<Vec<_>>()
            };
            if !evicted.is_empty() {
                tokio::spawn(async move { revoke(&evicted).await });
            }
        }
        Ok((session, false))
    }

    async fn login(&self, key: &SessionKey, config: &ObjectConfig, kube: &KubeApi) -> Result<VaultSession, ObjectVaultError> {
        let vault_config = self.client_config(config, kube).await?;
        let addr = || config.vault.addr.clone();
        let client = Client::new(&vault_config).map_err(|e| ObjectVaultError::Client { addr: addr(), cause: e.to_string() })?;
        let obtained = Instant::now();
        let result = match &key.identity {
            Identity::ServiceAccount { namespace, name } => {
                let jwt = kube.service_account_token(namespace, name).await.map_err(ObjectVaultError::ServiceAccountToken)?;
                let body = auth::jwt_body(&config.vault.role, &jwt);
                client.login(&vault_config.auth.mount, &body).await.map(|a| (a.client_token, a.lease_duration, true)).map_err(|e| {
                    ObjectVaultError::Login {
                        addr: addr(),
                        mount: vault_config.auth.mount.clone(),
                        role: config.vault.role.clone(),
                        service_account: format!("{namespace}/{name}"),
                        cause: e.to_string(),
                    }
                })
            }
            Identity::Webhook => auth::token(&client, &vault_config.auth)
                .await
                .map(|t| {
                    let revocable = matches!(t.source, TokenSource::Login { .. });
                    (t.secret, t.lease_duration, revocable)
                })
                .map_err(|e| ObjectVaultError::Token { addr: addr(), cause: e.to_string() }),
        };
        self.metrics.vault_login(&config.vault.addr, if result.is_ok() { "ok" } else { "error" });
        let (token, ttl, revocable): (SecretString, u64, bool) = result?;
        Ok(VaultSession {
            // Reads and writes for objects reach secrets only, whatever a reference says.
            client: client.with_token(token).secrets_only(),
            renew_after: (revocable && ttl > 0).then(|| obtained + Duration::from_secs(ttl) * 2 / 3),
            expires: (ttl > 0).then(|| obtained + Duration::from_secs(ttl)),
            revocable,
        })
    }

    /// `ca.crt` of the `vault-tls-secret` Secret in the webhook's own namespace.
    async fn ca_from_secret(&self, name: &str, kube: &KubeApi) -> Result<String, ObjectVaultError> {
        let namespace = match &self.settings.own_namespace {
            Some(n) => n.clone(),
            None => std::fs::read_to_string(SA_NAMESPACE_FILE)
                .map(|s| s.trim().to_string())
                .map_err(|e| ObjectVaultError::UnknownNamespace { name: name.to_string(), cause: e.to_string() })?,
        };
        let secret = kube.secret(&namespace, name).await.map_err(ObjectVaultError::TlsSecret)?;
        let ca = secret.as_ref().and_then(|s| s.data.as_ref()).and_then(|d| d.get("ca.crt"));
        match ca.map(|b| String::from_utf8(b.0.clone())) {
            Some(Ok(pem)) if !pem.trim().is_empty() => Ok(pem),
            _ => Err(ObjectVaultError::NoCa { namespace, name: name.to_string() }),
        }
    }

    /// Revokes every token the webhook obtained by a login, all at once within 5 s; returns how
    /// many were revoked.
    pub async fn revoke_all(&self) -> usize {
        let slots: Vec<SessionSlot> = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, e)| e.slot).collect();
        let mut sessions: Vec<Arc<VaultSession>> = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        let now = Instant::now();
        sessions.retain(|s| s.expires.is_none_or(|e| e > now));
        for slot in slots {
            sessions.extend(slot.lock().await.take());
        }
        revoke(&sessions).await
    }
}

/// Revokes the tokens of `sessions` that the webhook obtained, concurrently, within 5 s in all;
/// returns how many were revoked.
async fn revoke(sessions: &[Arc<VaultSession>]) -> usize {
    let mut calls = tokio::task::JoinSet::new();
    for s in sessions.iter().filter(|s| s.revocable) {
        let client = s.client.impatient_once();
        calls.spawn(async move {
            match client.revoke_self().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("revoking a Vault token at {}: {e}", client.addr());
                    false
                }
            }
        });
    }
    let mut revoked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, calls.join_next()).await {
        revoked += usize::from(done.unwrap_or(false));
    }
    if !calls.is_empty() {
        tracing::warn!(left = calls.len(), "revoking the webhook's Vault tokens: not all answered within 5 s");
    }
    revoked
}

fn transit(config: &ObjectConfig) -> Transit {
    Transit {
        key_id: Some(config.vault.transit_key_id.clone()).filter(|k| !k.is_empty()),
        mount: config.transit_mount().into(),
        batch_size: (config.vault.transit_batch_size as usize).max(1),
    }
}

fn session_key(config: &ObjectConfig, namespace: &str) -> SessionKey {
    let v = &config.vault;
    SessionKey {
        addr: v.addr.trim_end_matches('/').to_ascii_lowercase(),
        skip_verify: v.skip_verify,
        tls_secret: v.tls_secret.clone(),
        namespace: v.namespace.trim().trim_matches('/').to_string(),
        auth_method: format!("{:?}", config.auth_method),
        mount: v.path.trim().trim_matches('/').to_string(),
        role: v.role.clone(),
        identity: match config.service_account.as_str() {
            "" => Identity::Webhook,
            name => Identity::ServiceAccount { namespace: namespace.to_string(), name: name.to_string() },
        },
    }
}
