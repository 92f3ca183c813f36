//! A small bounded cache whose entries expire: image commands, and pull credentials.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
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
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key.clone(), (Instant::now(), value)).is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
