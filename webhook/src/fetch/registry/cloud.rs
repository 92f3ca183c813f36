//! What the clouds' registry credentials (ECR, GCR/Artifact Registry, ACR) share: HTTP clients
//! made on first use (most clusters never see such an image), and tokens kept per registry until
//! shortly before they expire, one fetch per registry at a time.

use super::pull_secrets::DockerAuth;
use crate::fetch::cache::{Cached, Got};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use vault_env::cloud::Clients;

/// Credentials and tokens are renewed this long before they expire.
pub const MARGIN: Duration = Duration::from_secs(5 * 60);
/// Registries whose tokens are kept.
const TOKEN_CACHE_SIZE: usize = 256;

pub struct LazyClients {
    timeout: Duration,
    cell: OnceLock<Result<Clients, String>>,
}

impl LazyClients {
    pub fn new(timeout: Duration) -> LazyClients {
        LazyClients { timeout, cell: OnceLock::new() }
    }

    /// The clients; metadata services answer at once or not at all (2 s).
    pub fn get(&self) -> Result<&Clients, String> {
        self.cell.get_or_init(|| Clients::new(Duration::from_secs(2), self.timeout)).as_ref().map_err(Clone::clone)
    }
}

pub struct TokenCache {
    tokens: Cached<String, DockerAuth>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache { tokens: Cached::new(TOKEN_CACHE_SIZE, Duration::from_secs(12 * 3600)) }
    }
}

impl TokenCache {
    /// The credentials for `registry`: kept ones, or `fetch`ed (with their expiry) and kept until
    /// [`MARGIN`] before it.
    pub async fn get(&self, registry: &str, fetch: impl AsyncFnOnce() -> Result<(DockerAuth, SystemTime), String>) -> Result<DockerAuth, String> {
        let until = |expires: SystemTime| {
            vault_env::config::reader::instant_after(expires.duration_since(SystemTime::now()).unwrap_or_default().saturating_sub(MARGIN))
        };
        let key = registry.to_string();
        let got = self.tokens.get_or_fetch_until(&key, async || fetch().await.map(|(auth, expires)| (auth, Some(until(expires)))));
        got.await.map(Got::value)
    }
}

/// `registry` without its port.
pub fn host_of(registry: &str) -> &str {
    registry.rsplit_once(':').map_or(registry, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { registry })
}
