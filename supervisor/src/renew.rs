//! Lease timing: when to renew a lease, and when to replace one that can't be extended any more.
//! Pure (time is an argument), so it is tested with a fake clock. It knows nothing about Vault:
//! a lease is a TTL granted at some instant.
//!
//! - Renew at 70–80 % of the granted TTL, spread evenly by jitter so that many pods started
//!   together do not renew in step. That leaves at least a fifth of the lease to retry a failed
//!   renewal. A caller keeping one jitter per lease for its life makes such a fleet drift apart
//!   by a tenth of the lease at every cycle, evenly (vault-env's `lease` module does).
//! - A lease is "capped" when a renewal grants less than asked (it reached its max TTL, or the
//!   token it belongs to expires sooner) or it is not renewable: renewing again gains nothing, so
//!   it must be replaced, [`replace_lead`] before it expires.
//! - Failed renewals are retried with exponential backoff, never later than halfway to expiry.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// When the current TTL was granted.
    pub granted_at: Instant,
    /// The TTL granted then.
    pub ttl: Duration,
    /// The TTL asked for (the lease's original duration): a grant below it means capped.
    pub wanted: Duration,
    pub renewable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Renew at this instant.
    Renew(Instant),
    /// Replace the lease at this instant (it can't be extended further).
    Replace(Instant),
}

impl Step {
    pub fn at(self) -> Instant {
        match self {
            Step::Renew(t) | Step::Replace(t) => t,
        }
    }
}

impl Lease {
    pub fn new(granted_at: Instant, ttl: Duration, renewable: bool) -> Lease {
        Lease { granted_at, ttl, wanted: ttl, renewable }
    }

    pub fn expires_at(&self) -> Instant {
        self.granted_at + self.ttl
    }

    /// A renewal granted `ttl` at `now`.
    pub fn renewed(self, now: Instant, ttl: Duration) -> Lease {
        Lease { granted_at: now, ttl, ..self }
    }

    /// True when renewing can still extend the lease by its full duration.
    pub fn extendable(&self) -> bool {
        // Vault rounds TTLs to whole seconds; allow for that.
        self.renewable && self.ttl + Duration::from_secs(1) >= self.wanted && !self.ttl.is_zero()
    }

    /// The next thing to do. `jitter` is a random number in [0, 1).
    pub fn next_step(&self, jitter: f64) -> Step {
        if self.extendable() {
            let fraction = 0.70 + 0.10 * jitter.clamp(0.0, 1.0);
            Step::Renew(self.granted_at + self.ttl.mul_f64(fraction))
        } else {
            let lead = replace_lead(self.wanted);
            Step::Replace(self.expires_at().checked_sub(lead).unwrap_or(self.granted_at).max(self.granted_at))
        }
    }
}

/// How long before expiry a replacement starts: a fifth of the lease, between 1 s and 5 min.
/// Time to fetch new credentials and stop the app gracefully while the old ones still work.
pub fn replace_lead(lease: Duration) -> Duration {
    lease.div_f64(5.0).clamp(Duration::from_secs(1), Duration::from_secs(300)).min(lease / 2)
}

/// The shortest wait between retries, however close the deadline: a fleet of pods must not
/// hammer a struggling Vault in the last moments before their leases expire.
pub const RETRY_FLOOR: Duration = Duration::from_millis(500);

/// When to retry after `attempt` failures: 1 s doubling up to 60 s, but no later than halfway
/// between now and `deadline` (so there is time for another try) and no sooner than
/// [`RETRY_FLOOR`]; then up to 20 % more, by `jitter` (0..1), so that pods spread out.
pub fn retry_at(now: Instant, attempt: u32, deadline: Instant, jitter: f64) -> Instant {
    let backoff = Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60));
    let half_left = deadline.saturating_duration_since(now) / 2;
    let wait = backoff.min(half_left).max(RETRY_FLOOR);
    now + wait + wait.mul_f64(jitter.clamp(0.0, 1.0) * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn renews_at_70_to_80_percent() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, S(100), true);
        assert_eq!(lease.next_step(0.0), Step::Renew(t0 + S(70)));
        assert_eq!(lease.next_step(0.5), Step::Renew(t0 + S(75)));
        assert_eq!(lease.next_step(0.999_999).at().duration_since(t0).as_secs(), 79);
    }

    #[test]
    fn capped_or_not_renewable_leases_are_replaced_before_expiry() {
        let t0 = Instant::now();
        let capped = Lease::new(t0, S(10), true).renewed(t0 + S(7), S(5));
        assert_eq!(capped.next_step(0.5), Step::Replace(t0 + S(12) - S(2)));
        let fixed = Lease::new(t0, S(3600), false);
        assert_eq!(fixed.next_step(0.5), Step::Replace(t0 + S(3600) - S(300)));
    }

    #[test]
    fn replace_lead_bounds() {
        assert_eq!(replace_lead(S(10)), S(2));
        assert_eq!(replace_lead(S(2)), S(1));
        assert_eq!(replace_lead(S(1)), Duration::from_millis(500));
        assert_eq!(replace_lead(S(86_400)), S(300));
    }

    #[test]
    fn retry_is_bounded_by_time_left() {
        let now = Instant::now();
        assert_eq!(retry_at(now, 0, now + S(100), 0.0), now + S(1));
        assert_eq!(retry_at(now, 3, now + S(100), 0.0), now + S(8));
        assert_eq!(retry_at(now, 10, now + S(1000), 0.0), now + S(60));
        assert_eq!(retry_at(now, 5, now + S(10), 0.0), now + S(5));
        assert_eq!(retry_at(now, 3, now + S(100), 1.0), now + S(8) + Duration::from_millis(1600), "jitter adds up to 20 %");
    }

    /// Near expiry, retries used to converge on the deadline (the last five within
    /// 20 ms). Now they keep a floor, so a run of failures up to expiry makes few calls.
    #[test]
    fn retries_near_expiry_keep_a_floor() {
        let start = Instant::now();
        let deadline = start + S(10);
        let (mut now, mut attempts) = (start, 0u32);
        while now < deadline {
            let next = retry_at(now, attempts, deadline, 0.0);
            assert!(next - now >= RETRY_FLOOR, "attempt {attempts}: {:?}", next - now);
            now = next;
            attempts += 1;
        }
        assert!(attempts <= 12, "{attempts} attempts in 10 s");
        assert_eq!(retry_at(start, 5, start, 0.0), start + RETRY_FLOOR, "past the deadline: still the floor");
    }

    /// Property, with a fake clock: for any TTL, max TTL and jitter, every renewal lands before the
    /// lease expires, and the lease is replaced before it expires (never after).
    #[test]
    fn property_renewals_and_replacement_land_before_expiry() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..20_000 {
            let t0 = Instant::now();
            let ttl = S(rng.u64(1..=7200));
            let max_ttl = ttl * rng.u32(1..=20);
            let max_end = t0 + max_ttl;
            let mut lease = Lease::new(t0, ttl, true);
            let mut renewals = 0;
            loop {
                let expires = lease.expires_at();
                match lease.next_step(rng.f64()) {
                    Step::Renew(at) => {
                        assert!(at < expires, "renewal at or after expiry");
                        assert!(at >= lease.granted_at);
                        // Vault grants the asked TTL, capped at the max TTL (whole seconds).
                        let granted = S(ttl.as_secs().min(max_end.saturating_duration_since(at).as_secs()));
                        lease = lease.renewed(at, granted);
                        renewals += 1;
                        assert!(renewals < 10_000, "never stops renewing");
                    }
                    Step::Replace(at) => {
                        assert!(at < expires || expires == lease.granted_at, "replacement at or after expiry");
                        assert!(expires.saturating_duration_since(at) >= replace_lead(ttl).min(lease.ttl));
                        break;
                    }
                }
            }
        }
    }
}
