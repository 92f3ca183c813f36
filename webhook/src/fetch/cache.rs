//! A small bounded cache whose entries expire (image commands, pull credentials, ECR tokens),
//! [`Gates`], which let one caller at a time fill a missing entry, and [`Cached`], the two
//! together: check → gate → check → fetch → put, written once.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    /// Each value with the instant it expires.
    entries: HashMap<K, (Instant, V)>,
    order: VecDeque<K>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// At most `capacity` entries (oldest out first), each kept for `ttl`. Capacity 0 caches nothing.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache { entries: HashMap::new(), order: VecDeque::new(), capacity, ttl }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        match self.entries.get(key) {
            Some((expires, v)) if Instant::now() < *expires => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&mut self, key: K, value: V) {
        self.put_until(key, value, Instant::now() + self.ttl);
    }

    /// Keeps `value` until `expires` instead of for the cache's TTL.
    pub fn put_until(&mut self, key: K, value: V, expires: Instant) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key.clone(), (expires, value)).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        // Keys of entries that expired and were removed on `get` linger in `order`; drop them.
        if self.order.len() > self.capacity * 2 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}

/// One caller at a time per key. On a cache miss, callers pass the key's gate, look in the cache
/// again, and only then fetch: when many pods need the same missing entry at once (a Deployment
/// scaling up, an entry expiring under load), one fetch fills it for all of them.
pub struct Gates<K> {
    open: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for Gates<K> {
    fn default() -> Self {
        Gates { open: Mutex::new(HashMap::new()) }
    }
}

/// Held while the caller fills the entry; the next caller for the key goes on when it is dropped.
pub struct Gate<'a, K: Hash + Eq> {
    gates: &'a Gates<K>,
    key: K,
    pass: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> Gates<K> {
    pub async fn pass(&self, key: &K) -> Gate<'_, K> {
        let gate = self.open.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_default().clone();
        Gate { gates: self, key: key.clone(), pass: Some(gate.lock_owned().await) }
    }
}

impl<K: Hash + Eq> Drop for Gate<'_, K> {
    fn drop(&mut self) {
        let mut open = self.gates.open.lock().unwrap_or_else(|p| p.into_inner());
        // The pass is given up while the map is locked: the next caller's own drop, which waits
        // for the map, then sees this reference gone (it kept the gate otherwise).
        drop(self.pass.take());
        // Only the map holds it (nobody holds or waits for it): forget the key.
        if open.get(&self.key).is_some_and(|g| Arc::strong_count(g) == 1) {
            open.remove(&self.key);
        }
    }
}

/// Where a value came from.
pub enum Got<V> {
    Cached(V),
    Fetched(V),
}

impl<V> Got<V> {
    pub fn value(self) -> V {
        match self {
            Got::Cached(v) | Got::Fetched(v) => v,
        }
    }
}

/// A [`TtlCache`] whose misses are filled by one fetch per key at a time.
pub struct Cached<K, V> {
    cache: Mutex<TtlCache<K, V>>,
    gates: Gates<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Cached<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Cached { cache: Mutex::new(TtlCache::new(capacity, ttl)), gates: Gates::default() }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(key)
    }

    /// The cached value, or the one `fetch` returns (kept for the cache's TTL). Callers that find
    /// the key being fetched wait for that fetch and read its result.
    pub async fn get_or_fetch<E>(&self, key: &K, fetch: impl AsyncFnOnce() -> Result<V, E>) -> Result<Got<V>, E> {
        self.get_or_fetch_until(key, async || fetch().await.map(|v| (v, None))).await
    }

    /// As [`Cached::get_or_fetch`]; `fetch` may say until when its value is good.
    pub async fn get_or_fetch_until<E>(&self, key: &K, fetch: impl AsyncFnOnce() -> Result<(V, Option<Instant>), E>) -> Result<Got<V>, E> {
        if let Some(hit) = self.get(key) {
            return Ok(Got::Cached(hit));
        }
        let _gate = self.gates.pass(key).await;
        if let Some(hit) = self.get(key) {
            return Ok(Got::Cached(hit));
        }
        let (value, until) = fetch().await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match until {
            Some(expires) => cache.put_until(key.clone(), value.clone(), expires),
            None => cache.put(key.clone(), value.clone()),
        }
        Ok(Got::Fetched(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Also the regression test of a gate left behind: its holder let the next caller in before
    /// its own reference to the gate was gone, so a caller on the other thread quick enough to
    /// finish in between saw three references and kept the gate (7 runs in 200 of one round).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_fetch_per_key_at_a_time() {
        for round in 0..20 {
            let gates: Arc<Gates<&str>> = Arc::default();
            let cache = Arc::new(Mutex::new(TtlCache::new(8, Duration::from_secs(60))));
            let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let (gates, cache, fetches) = (gates.clone(), cache.clone(), fetches.clone());
                    tokio::spawn(async move {
                        let key = if i % 2 == 0 { "a" } else { "b" };
                        let _gate = gates.pass(&key).await;
                        if let Some(v) = cache.lock().unwrap().get(&key) {
                            return v;
                        }
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        cache.lock().unwrap().put(key, key.len());
                        key.len()
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), 1);
            }
            assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2, "one fetch per key");
            assert!(gates.open.lock().unwrap().is_empty(), "a gate was left behind in round {round}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_or_fetch_fetches_once_per_key_and_honours_expiry() {
        let cached: Arc<Cached<&str, usize>> = Arc::new(Cached::new(8, Duration::from_secs(60)));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cached, fetches) = (cached.clone(), fetches.clone());
                tokio::spawn(async move {
                    let got = cached.get_or_fetch(&"k", async || {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(7)
                    });
                    got.await.unwrap().value()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(matches!(cached.get_or_fetch_until(&"e", async || Ok::<_, ()>((1, Some(soon)))).await, Ok(Got::Fetched(1))));
        assert!(matches!(cached.get_or_fetch_until(&"e", async || Ok::<_, ()>((2, None))).await, Ok(Got::Cached(1))));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cached.get(&"e"), None, "its own expiry, not the cache's hour");
        assert!(cached.get_or_fetch(&"x", async || Err::<usize, _>("down")).await.is_err());
        assert_eq!(cached.get(&"x"), None, "errors are not cached");
    }

    #[test]
    fn bounded_and_expiring() {
        let mut c = TtlCache::new(2, Duration::from_millis(50));
        c.put(1, "a");
        c.put(2, "b");
        c.put(3, "c");
        assert_eq!(c.get(&1), None, "oldest evicted");
        assert_eq!(c.get(&3), Some("c"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get(&3), None, "expired");
        for i in 0..100 {
            c.put(i, "x");
        }
        assert!(c.entries.len() <= 2 && c.order.len() <= 4);
        let mut off = TtlCache::new(0, Duration::from_secs(60));
        off.put(1, "a");
        assert_eq!(off.get(&1), None);
    }
}
