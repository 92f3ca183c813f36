//! The Vault side of lease keeping: the token and every lease in one list, renewed by one loop
//! whose renew call is a parameter (Vault's `renewFunc` in `LifetimeWatcher`), so the decisions —
//! renew, retry with backoff, replace — are unit-tested with a fake renewer. The timing rules
//! (70–80 %, backoff bounded by expiry, replacement lead) are `vault_env_supervisor::renew`'s.

use crate::client::{Client, ClientError};
use crate::resolve::Lease;
use std::future::Future;
use std::time::{Duration, Instant};
use vault_env_supervisor::renew::{self, Step};

/// How many renewals are in flight at once: as many as a start-up's reads from a Vault on another
/// host (each lease keeps its own place in its window, so few are due together after the start).
pub const RENEWALS_IN_FLIGHT: usize = crate::client::IN_FLIGHT;

/// What is kept alive.
#[derive(Debug, Clone, PartialEq)]
pub enum Renewable {
    Token,
    Lease(Lease),
}

impl Renewable {
    /// `token` or `lease`, for log lines.
    fn noun(&self) -> &'static str {
        match self {
            Renewable::Token => "token",
            Renewable::Lease(_) => "lease",
        }
    }

    fn path(&self) -> &str {
        match self {
            Renewable::Token => "",
            Renewable::Lease(l) => &l.path,
        }
    }

    /// How logs and errors name it (a lease id is cut short).
    pub fn describe(&self) -> String {
        match self {
            Renewable::Token => "the Vault token".into(),
            Renewable::Lease(l) => format!("lease {} ({})", short_id(&l.lease_id), l.path),
        }
    }
}

/// The renew call: Vault's in the daemon, a fake in tests. Returns the TTL granted, in seconds.
pub trait Renewer {
    fn renew(&self, item: &Renewable, wanted_secs: u64) -> impl Future<Output = Result<u64, ClientError>>;
    /// Whether the token itself is still valid (`lookup-self`), asked after a renewal is refused
    /// with 401/403: a token revoked from outside is replaced by a new login, a policy that
    /// refuses one renewal is not.
    fn token_valid(&self) -> impl Future<Output = bool>;
    /// Vault's address, for errors.
    fn addr(&self) -> &str;
}

impl Renewer for Client {
    async fn renew(&self, item: &Renewable, wanted_secs: u64) -> Result<u64, ClientError> {
        match item {
            Renewable::Token => self.renew_self(wanted_secs).await.map(|a| a.lease_duration),
            Renewable::Lease(l) => self.renew_lease(&l.lease_id, wanted_secs).await.map(|s| s.lease_duration),
        }
    }

    async fn token_valid(&self) -> bool {
        !self.lookup_self().await.is_err_and(|e| e.is_denied())
    }

    fn addr(&self) -> &str {
        Client::addr(self)
    }
}

/// One lease (or the token) and when to act on it next.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub item: Renewable,
    pub timing: renew::Lease,
    pub due: Step,
    pub attempt: u32,
    /// Where in the renewal window (70–80 % of the TTL) it renews, drawn once when tracking
    /// begins and kept for its life (`renew::Lease::next_step`'s `jitter`): a fleet started
    /// together then spreads by a tenth of the lease at every cycle, evenly, where a fresh draw at
    /// each renewal spread it only as the square root of the cycles, bunched in the middle.
    pub phase: f64,
}

/// What a pass over the due items asks for.
#[derive(Debug, PartialEq)]
pub enum Due {
    Nothing,
    /// Item `index` can't be extended: replace it (or, per policy, exit or ignore). It ends at `expires`.
    Replace {
        index: usize,
        what: String,
        expires: Instant,
        /// Vault refused the token itself (revoked from outside): only a new login helps.
        token_refused: bool,
    },
}

/// The token (first, when kept) and every lease.
#[derive(Debug, Default)]
pub struct Leases {
    items: Vec<Tracked>,
    /// `VAULT_ENV_RESTART_SPLAY`: replacements start up to this much earlier, at random; `None`:
    /// up to the replacement lead again (a fifth of the lease, at most 5 min).
    splay: Option<Duration>,
}

impl Leases {
    pub fn new(splay: Option<Duration>) -> Leases {
        Leases { items: Vec::new(), splay }
    }

    /// Starts tracking `item`, granted `ttl` at `now`.
    pub fn track(&mut self, item: Renewable, now: Instant, ttl: Duration, renewable: bool) {
        let timing = renew::Lease::new(now, ttl, renewable);
        let phase = fastrand::f64();
        let tracked = Tracked { item, timing, due: schedule(&timing, self.splay, phase), attempt: 0, phase };
        match tracked.item {
            Renewable::Token => {
                self.items.retain(|t| t.item != Renewable::Token);
                self.items.insert(0, tracked);
            }
            Renewable::Lease(_) => self.items.push(tracked),
        }
    }

    /// Stops tracking every lease (the token stays).
    pub fn clear_leases(&mut self) {
        self.items.retain(|t| t.item == Renewable::Token);
    }

    pub fn items(&self) -> &[Tracked] {
        &self.items
    }

    /// When the next item is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.items.iter().map(|t| t.due.at()).min()
    }

    /// Whether the token is tracked and can no longer be extended (it caps every lease).
    pub fn token_capped(&self) -> bool {
        self.items.iter().any(|t| t.item == Renewable::Token && !t.timing.extendable())
    }

    pub fn is_token(&self, index: usize) -> bool {
        self.items.get(index).is_some_and(|t| t.item == Renewable::Token)
    }

    pub fn set_due(&mut self, index: usize, due: Step) {
        if let Some(t) = self.items.get_mut(index) {
            t.due = due;
        }
    }

    /// One more failed attempt at item `index`; returns the count.
    pub fn bump_attempt(&mut self, index: usize) -> u32 {
        self.items.get_mut(index).map_or(1, |t| {
            t.attempt += 1;
            t.attempt
        })
    }

    pub fn forget(&mut self, index: usize) {
        if index < self.items.len() {
            self.items.remove(index);
        }
    }

    /// Renews every item due at `now`, up to [`RENEWALS_IN_FLIGHT`] at once (1,000 leases due
    /// together must not queue one behind another past their window); reports the first one that
    /// needs replacing. No call waits past the item's expiry (a hung Vault must not hold the
    /// loop), and the clock is read again after every round.
    pub async fn renew_due(&mut self, renewer: &impl Renewer, now: Instant) -> Due {
        let splay = self.splay;
        let mut now = now;
        let due: Vec<usize> = (0..self.items.len()).filter(|&i| self.items[i].due.at() <= now).collect();
        let mut rest = due.as_slice();
        while !rest.is_empty() {
            // A run of renewals, cut before the first item that needs replacing.
            let renewals = rest.iter().take(RENEWALS_IN_FLIGHT).take_while(|&&i| matches!(self.items[i].due, Step::Renew(_))).count();
            if renewals == 0 {
                let (index, t) = (rest[0], &self.items[rest[0]]);
                return Due::Replace { index, what: t.item.describe(), expires: t.timing.expires_at(), token_refused: false };
            }
            let (round, later) = rest.split_at(renewals);
            rest = later;
            let round_began = now;
            let calls = round.iter().map(|&index| {
                let t = &self.items[index];
                let left = t.timing.expires_at().saturating_duration_since(now).max(renew::RETRY_FLOOR);
                async move {
                    let result = match tokio::time::timeout(left, renewer.renew(&t.item, t.timing.wanted.as_secs())).await {
                        Ok(result) => result,
                        Err(_) => {
                            Err(ClientError::Unreachable { addr: renewer.addr().into(), cause: format!("no answer within {}s", left.as_secs()) })
                        }
                    };
                    // The new TTL counts from the answer, not from the end of the round.
                    let answered = Instant::now().max(round_began);
                    let refused = matches!(&result, Err(e) if e.is_denied());
                    let token_refused = refused && !tokio::time::timeout(left, renewer.token_valid()).await.unwrap_or(true);
                    (result, token_refused, answered)
                }
            });
            let results = futures_util::future::join_all(calls).await;
            now = now.max(Instant::now());
            for (&index, (result, token_refused, answered)) in round.iter().zip(results) {
                let t = &mut self.items[index];
                let (what, noun, path) = (t.item.describe(), t.item.noun(), t.item.path().to_string());
                match result {
                    Ok(ttl) => {
                        t.timing = t.timing.renewed(answered, Duration::from_secs(ttl));
                        t.due = schedule(&t.timing, splay, t.phase);
                        t.attempt = 0;
                        tracing::info!(path, ttl, capped = !t.timing.extendable(), "{noun} renewed");
                    }
                    // 400 "lease not found"/"invalid lease": revoked or expired; nothing to renew.
                    Err(e) if e.status() == Some(400) && matches!(t.item, Renewable::Lease(_)) => {
                        tracing::warn!("{what} can no longer be renewed: {e}");
                        return Due::Replace { index, what, expires: now, token_refused: false };
                    }
                    Err(e) if token_refused => {
                        tracing::warn!("{what} can no longer be renewed: the Vault token was refused ({e}); it was revoked or has expired");
                        return Due::Replace { index, what, expires: now, token_refused: true };
                    }
                    Err(e) => {
                        t.attempt += 1;
                        t.due = Step::Renew(renew::retry_at(now, t.attempt, t.timing.expires_at(), fastrand::f64()));
                        tracing::warn!(path, attempt = t.attempt, "{noun} renewal failed: {e}; retrying");
                        if now >= t.timing.expires_at() {
                            return Due::Replace { index, what, expires: t.timing.expires_at(), token_refused: false };
                        }
                    }
                }
            }
        }
        Due::Nothing
    }
}

fn schedule(timing: &renew::Lease, splay: Option<Duration>, phase: f64) -> Step {
    let splay = splay.unwrap_or_else(|| renew::replace_lead(timing.wanted));
    match timing.next_step(phase) {
        Step::Replace(at) if !splay.is_zero() => {
            // Only the part of the window still ahead counts: clamping a draw that fell before
            // the renewal to the renewal itself would pile a fleet's replacements up there.
            let room = splay.min(at.saturating_duration_since(timing.granted_at));
            Step::Replace(at - room.mul_f64(fastrand::f64()))
        }
        step => step,
    }
}

/// A lease id as it may be logged: the path and the first characters of the id.
pub fn short_id(id: &str) -> String {
    match id.rsplit_once('/') {
        Some((path, tail)) => format!("{path}/{}…", tail.chars().take(4).collect::<String>()),
        None => format!("{}…", id.chars().take(4).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// Answers each renew call with the next scripted result and records what was asked.
    struct Fake {
        answers: RefCell<Vec<Result<u64, ClientError>>>,
        calls: RefCell<Vec<(String, u64)>>,
        token_revoked: RefCell<bool>,
    }

    impl Fake {
        fn new(answers: Vec<Result<u64, ClientError>>) -> Fake {
            Fake { answers: RefCell::new(answers.into_iter().rev().collect()), calls: RefCell::default(), token_revoked: RefCell::new(false) }
        }
    }

    impl Renewer for Fake {
        async fn renew(&self, item: &Renewable, wanted_secs: u64) -> Result<u64, ClientError> {
            self.calls.borrow_mut().push((item.describe(), wanted_secs));
            self.answers.borrow_mut().pop().expect("a scripted answer")
        }

        async fn token_valid(&self) -> bool {
            self.calls.borrow_mut().push(("lookup-self".into(), 0));
            !*self.token_revoked.borrow()
        }

        fn addr(&self) -> &str {
            "http://127.0.0.1:8200"
        }
    }

    fn lease(id: &str) -> Renewable {
        Renewable::Lease(Lease {
            path: "database/creds/app".into(),
            lease_id: format!("database/creds/app/{id}"),
            duration: 60,
            renewable: true,
            granted_at: Instant::now(),
        })
    }

    fn refused(status: u16) -> ClientError {
        ClientError::Status { status, errors: vec!["nope".into()] }
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime").block_on(f)
    }

    #[test]
    fn the_token_comes_first_and_due_items_are_renewed_for_their_full_ttl() {
        let t0 = Instant::now();
        let mut leases = Leases::new(Some(Duration::ZERO));
        leases.track(lease("AAAAAAAA"), t0, S(60), true);
        leases.track(Renewable::Token, t0, S(100), true);
        assert!(leases.is_token(0));
        let fake = Fake::new(vec![Ok(100), Ok(60)]);
        // Both are due by 80 s (renewals fall at 70–80 % of the TTL).
        assert_eq!(run(leases.renew_due(&fake, t0 + S(80))), Due::Nothing);
        assert_eq!(
            *fake.calls.borrow(),
            [("the Vault token".to_string(), 100), ("lease database/creds/app/AAAA… (database/creds/app)".to_string(), 60)]
        );
        let due = leases.items()[1].due;
        assert!(matches!(due, Step::Renew(at) if at >= t0 + S(80) + S(42) && at <= t0 + S(80) + S(48)), "{due:?}");
    }

    /// The first `cycles` renewals of the one lease in `leases`, each answered with `ttl` (fake
    /// clock: every call is made at the instant it is due); their instants, from `t0`.
    fn renewals(leases: &mut Leases, ttl: u64, cycles: usize, t0: Instant) -> Vec<Duration> {
        let fake = Fake::new(vec![Ok(ttl); cycles]);
        (0..cycles)
            .map(|_| {
                let at = leases.next_due().expect("something to renew");
                assert_eq!(run(leases.renew_due(&fake, at)), Due::Nothing);
                at - t0
            })
            .collect()
    }

    /// A lease keeps its place in the renewal window for its life: each renewal falls at the same
    /// fraction of the TTL it renews (a fresh draw each time used to move it around the window).
    #[test]
    fn a_lease_renews_at_the_same_fraction_of_its_ttl_every_time() {
        for _ in 0..20 {
            let t0 = Instant::now();
            let mut leases = Leases::new(None);
            leases.track(lease("AAAAAAAA"), t0, S(100), true);
            let times = renewals(&mut leases, 100, 5, t0);
            let first = times[0];
            assert!((S(70)..=S(80)).contains(&first), "{first:?}");
            for (k, at) in times.iter().enumerate() {
                let gap = (first * (k as u32 + 1)).abs_diff(*at);
                assert!(gap < Duration::from_micros(10), "renewal {} at {at:?}, first at {first:?}", k + 1);
            }
        }
    }

    /// A fleet started together spreads out by a tenth of the lease at every cycle, evenly: the
    /// k-th renewals of 1,000 daemons whose leases began within 3 s are spread flat over about
    /// k tenths of the TTL, so no second of a cycle sees much more than the cycle's mean. With a
    /// fresh draw at each renewal the fleet spread only as the square root of k, bell-shaped:
    /// the second cycle's busiest second had 2.2-2.3 times its mean.
    #[test]
    fn a_fleet_started_together_renews_evenly_in_every_cycle() {
        fastrand::seed(26);
        let (t0, ttl, cycles) = (Instant::now(), 60, 4);
        let mut fleet: Vec<Vec<Duration>> = vec![Vec::new(); cycles];
        for daemon in 0..1_000u32 {
            let mut leases = Leases::new(None);
            leases.track(lease("AAAAAAAA"), t0 + Duration::from_millis(3 * u64::from(daemon)), S(ttl), true);
            for (k, at) in renewals(&mut leases, ttl, cycles, t0).into_iter().enumerate() {
                fleet[k].push(at);
            }
        }
        for (k, times) in fleet.iter().enumerate() {
            let mut per_second = std::collections::BTreeMap::<u64, u32>::new();
            for t in times {
                *per_second.entry(t.as_secs()).or_default() += 1;
            }
            let (first, last) = (per_second.keys().next().unwrap(), per_second.keys().next_back().unwrap());
            let span = (last - first + 1) as f64;
            let peak = f64::from(*per_second.values().max().unwrap());
            let ratio = peak * span / times.len() as f64;
            let tenths = 6.0 * (k + 1) as f64;
            assert!(span >= tenths, "cycle {}: spread over {span} s, less than {tenths} s", k + 1);
            // The first cycle is shaped by the starts (3 s) and the window (6 s): 1.5 with no
            // noise, 1.65-1.8 with the draws'; later ones are flat, 1.35-1.5 with the noise.
            let most = if k == 0 { 2.0 } else { 1.7 };
            assert!(ratio <= most, "cycle {}: the busiest second had {ratio:.2} times the cycle's mean", k + 1);
        }
    }

    /// Unset `VAULT_ENV_RESTART_SPLAY`: a lease that can't be extended is replaced between two
    /// leads and one lead before it ends (a fifth of the lease), at random, so the apps of many
    /// supervisors whose leases end together do not restart in the same second; `0s` keeps the
    /// single instant.
    #[test]
    fn replacements_spread_over_a_fifth_of_the_lease_by_default() {
        let t0 = Instant::now();
        let replace_at = |splay: Option<Duration>| {
            let mut leases = Leases::new(splay);
            leases.track(lease("AAAAAAAA"), t0, S(100), false);
            leases.items()[0].due
        };
        let times: Vec<Duration> = (0..200)
            .map(|_| match replace_at(None) {
                Step::Replace(at) => at - t0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(times.iter().all(|t| (S(60)..=S(80)).contains(t)), "{times:?}");
        let (min, max) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        assert!(*max - *min > S(15), "spread over the window: {min:?}..{max:?}");
        assert_eq!(replace_at(Some(Duration::ZERO)), Step::Replace(t0 + S(80)));
    }

    /// A renewal that comes back capped late in the lease leaves less than the whole window: the
    /// replacement is drawn over what is left of it, not clamped to the renewal (which put half
    /// of a fleet's replacements at that one instant; a CI run saw 24 restarts within 0.76 s).
    #[test]
    fn a_capped_renewal_spreads_replacements_over_what_is_left_of_the_window() {
        let t0 = Instant::now();
        let times: Vec<Duration> = (0..200)
            .map(|_| {
                let mut leases = Leases::new(None);
                leases.track(lease("C"), t0, S(100), true);
                // Renewed at 80 s for 30 s more (the max TTL): replace by 90 s (a 20 s lead),
                // and no earlier than the renewal, so within 80..=90 s.
                assert_eq!(run(leases.renew_due(&Fake::new(vec![Ok(30)]), t0 + S(80))), Due::Nothing);
                match leases.items()[0].due {
                    Step::Replace(at) => at - t0,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert!(times.iter().all(|t| (S(80)..=S(90)).contains(t)), "{times:?}");
        let at_the_renewal = times.iter().filter(|t| **t == S(80)).count();
        assert!(at_the_renewal < 5, "{at_the_renewal} of 200 replacements piled up at the renewal");
        let (min, max) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        assert!(*max - *min > S(8), "spread over what is left: {min:?}..{max:?}");
    }

    #[test]
    fn a_failed_renewal_is_retried_with_backoff_then_replaced_once_expired() {
        let t0 = Instant::now();
        let mut leases = Leases::new(Some(Duration::ZERO));
        leases.track(lease("B"), t0, S(60), true);
        let fake = Fake::new(vec![Err(refused(503)), Err(refused(503)), Err(refused(503))]);
        // Due by 48 s (80 % of 60 s).
        assert_eq!(run(leases.renew_due(&fake, t0 + S(48))), Due::Nothing);
        let within = |due: Step, from: Duration, to: Duration| matches!(due, Step::Renew(at) if at >= t0 + from && at <= t0 + to);
        assert_eq!(leases.items()[0].attempt, 1);
        assert!(within(leases.items()[0].due, S(50), S(50) + Duration::from_millis(400)), "{:?}", leases.items()[0].due);
        assert_eq!(run(leases.renew_due(&fake, t0 + S(51))), Due::Nothing);
        assert!(within(leases.items()[0].due, S(55), S(55) + Duration::from_millis(800)), "backoff doubles: {:?}", leases.items()[0].due);
        let expired = run(leases.renew_due(&fake, t0 + S(60)));
        assert!(matches!(expired, Due::Replace { index: 0, expires, .. } if expires == t0 + S(60)), "{expired:?}");
    }

    #[test]
    fn a_lease_vault_no_longer_knows_is_replaced_at_once_but_the_token_is_retried() {
        let t0 = Instant::now();
        let mut leases = Leases::new(Some(Duration::ZERO));
        leases.track(Renewable::Token, t0, S(100), true);
        leases.track(lease("C"), t0, S(60), true);
        let fake = Fake::new(vec![Err(refused(400)), Err(refused(400))]);
        let due = run(leases.renew_due(&fake, t0 + S(80)));
        assert!(matches!(&due, Due::Replace { index: 1, expires, what, .. } if *expires == t0 + S(80) && what.starts_with("lease")), "{due:?}");
        assert_eq!(leases.items()[0].attempt, 1, "the token's 400 is a failure to retry");
    }

    #[test]
    fn a_capped_grant_turns_renewal_into_replacement_before_expiry() {
        let t0 = Instant::now();
        let mut leases = Leases::new(Some(Duration::ZERO));
        leases.track(Renewable::Token, t0, S(100), true);
        let fake = Fake::new(vec![Ok(20)]);
        // Due by 80 s (80 % of 100 s); Vault grants only 20 s more.
        assert_eq!(run(leases.renew_due(&fake, t0 + S(80))), Due::Nothing);
        assert!(leases.token_capped());
        assert_eq!(leases.items()[0].due, Step::Replace(t0 + S(100) - S(20)), "a fifth of the wanted 100 s before the end");
        let due = run(leases.renew_due(&fake, t0 + S(80)));
        assert!(matches!(due, Due::Replace { index: 0, expires, .. } if expires == t0 + S(100)), "{due:?}");
        assert_eq!(fake.calls.borrow().len(), 1, "a replacement is not renewed again");
    }

    /// A 403 on renewal used to be retried until the lease ran out, although the
    /// token had been revoked and only a new login could help. A 403 now asks whether the token
    /// is still valid: if not, the item is replaced at once with `token_refused`.
    #[test]
    fn a_refused_token_asks_for_a_new_login_and_a_refused_renewal_is_retried() {
        let t0 = Instant::now();
        let mut leases = Leases::new(Some(Duration::ZERO));
        leases.track(lease("D"), t0, S(60), true);
        let policy = Fake::new(vec![Err(refused(403))]);
        assert_eq!(run(leases.renew_due(&policy, t0 + S(48))), Due::Nothing, "the token is fine: retried");
        assert_eq!(policy.calls.borrow().last().map(|c| c.0.as_str()), Some("lookup-self"));
        let revoked = Fake::new(vec![Err(refused(403))]);
        *revoked.token_revoked.borrow_mut() = true;
        let due = run(leases.renew_due(&revoked, t0 + S(51)));
        assert!(matches!(due, Due::Replace { index: 0, token_refused: true, .. }), "{due:?}");
    }

    /// A hung Vault used to hold the loop for 3×10 s per call, past the lease's expiry.
    #[test]
    fn a_renewal_never_waits_past_the_items_expiry() {
        struct Hung;
        impl Renewer for Hung {
            async fn renew(&self, _: &Renewable, _: u64) -> Result<u64, ClientError> {
                std::future::pending().await
            }
            async fn token_valid(&self) -> bool {
                std::future::pending().await
            }
            fn addr(&self) -> &str {
                "http://127.0.0.1:8200"
            }
        }
        let t0 = Instant::now();
        let mut leases = Leases::new(Some(Duration::ZERO));
        leases.track(lease("E"), t0, S(2), true);
        let started = Instant::now();
        let (due, logged) = crate::logging::captured(|| run(leases.renew_due(&Hung, t0 + Duration::from_millis(1600))));
        assert!(started.elapsed() < S(2), "waited {:?}", started.elapsed());
        assert!(matches!(due, Due::Nothing | Due::Replace { .. }), "{due:?}");
        assert_eq!(leases.items()[0].attempt, 1, "counted as a failure");
        // The warning named no address ("cannot reach Vault at : no answer within 0s").
        assert!(logged.contains("cannot reach Vault at http://127.0.0.1:8200: no answer within"), "{logged}");
    }

    #[test]
    fn short_id_hides_most_of_the_lease_id() {
        assert_eq!(short_id("database/creds/app/EOYXC0q047th4R4u8PH1moTi"), "database/creds/app/EOYX…");
        assert_eq!(short_id("abcdefgh"), "abcd…");
    }
}
