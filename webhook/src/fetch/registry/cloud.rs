//! What the clouds' registry credentials (ECR, GCR/Artifact Registry, ACR) share: HTTP clients
//! made on first use (most clusters never see such an image), and tokens kept per registry until
//! shortly before they expire, one fetch per registry at a time; a failed fetch is answered from
//! memory for [`FAILURE_KEPT`] (a throttled metadata service or token API is not asked again
//! for every admission).

use super::pull_secrets::DockerAuth;
use crate::fetch::cache::{Cached, Got};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use vault_env::cloud::{Clients, CloudError};

/// Credentials and tokens are renewed this long before they expire.
pub const MARGIN: Duration = Duration::from_secs(5 * 60);
/// Registries whose tokens are kept.
const TOKEN_CACHE_SIZE: usize = 256;
/// How long a failed token fetch is answered from memory.
pub const FAILURE_KEPT: Duration = Duration::from_secs(5);

pub struct LazyClients {
    timeout: Duration,
    cell: OnceLock<Result<Clients, CloudError>>,
}

impl LazyClients {
    pub fn new(timeout: Duration) -> LazyClients {
        LazyClients { timeout, cell: OnceLock::new() }
    }

    /// The clients; metadata services answer at once or not at all (2 s).
    pub fn get(&self) -> Result<&Clients, CloudError> {
        self.cell.get_or_init(|| Clients::new(Duration::from_secs(2), self.timeout)).as_ref().map_err(Clone::clone)
    }
}

pub struct TokenCache {
    tokens: Cached<String, DockerAuth>,
    failures: Mutex<HashMap<String, (Instant, CloudError)>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache { tokens: Cached::new(TOKEN_CACHE_SIZE, Duration::from_secs(12 * 3600)), failures: Mutex::default() }
    }
}

impl TokenCache {
    /// The credentials for `registry`: kept ones, or `fetch`ed (with their expiry) and kept until
    /// [`MARGIN`] before it.
    pub async fn get(
        &self,
        registry: &str,
        fetch: impl AsyncFnOnce() -> Result<(DockerAuth, SystemTime), CloudError>,
    ) -> Result<DockerAuth, CloudError> {
        let until = |expires: SystemTime| {
            vault_env::config::reader::instant_after(expires.duration_since(SystemTime::now()).unwrap_or_default().saturating_sub(MARGIN))
        };
        let key = registry.to_string();
        if let Some((at, why)) = self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && at.elapsed() < FAILURE_KEPT
        {
            return Err(why.clone());
        }
        let got = self.tokens.get_or_fetch_until(&key, async || fetch().await.map(|(auth, expires)| (auth, Some(until(expires)))));
        let got = got.await.map(Got::value);
        if let Err(why) = &got {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            failures.retain(|_, (at, _)| at.elapsed() < FAILURE_KEPT);
            if failures.len() < TOKEN_CACHE_SIZE {
                failures.insert(key, (Instant::now(), why.clone()));
            }
        }
        got
    }
}

/// `registry` without its port.
pub fn host_of(registry: &str) -> &str {
    registry.rsplit_once(':').map_or(registry, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { registry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A failing token source was asked again on every admission.
    #[tokio::test]
    async fn failures_are_remembered_briefly() {
        let cache = TokenCache::default();
        let calls = AtomicUsize::new(0);
        for _ in 0..5 {
            let got = cache.get("r.azurecr.io", async || {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(CloudError::Unreachable("throttled".to_string()))
            });
            assert_eq!(got.await.unwrap_err(), CloudError::Unreachable("throttled".to_string()));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
