//! Daemon mode: vault-env stays as the app's parent (PID 1 in a container), keeps the Vault token
//! and every lease alive ([`crate::lease`]), and replaces secrets before they expire.
//!
//! The loop has one arm per source of work, as tini's does:
//! - the supervisor's events: a signal (forwarded already), the app's exit, a reaped orphan;
//! - the next timer: a token or lease renewal (70–80 % of its TTL), a replacement (a capped or
//!   non-renewable lease, [`renew::replace_lead`] before expiry), a retry, or the stop timeout.
//!
//! Replacing = fetch every secret again (logging in again first if the token itself is capped),
//! then stop the app gracefully (`VAULT_ENV_STOP_SIGNAL`, `VAULT_ENV_STOP_TIMEOUT`, SIGKILL) and
//! start it with the new values; the old leases are revoked. A Vault outage only delays this: the
//! app is stopped (exit 75) only when a secret really expires with no replacement.

use crate::auth::{self, Token, TokenSource};
use crate::child_env;
use crate::client::Client;
use crate::config::reader::instant_after;
use crate::config::{Config, Env, OnLeaseEnd};
use crate::error::{EXIT_LEASE_ENDED, Error};
use crate::lease::{Due, Leases, RENEWALS_IN_FLIGHT, Renewable, short_id};
use crate::resolve::{self, Plan, Resolved, VarError};
use crate::session::{App, Session};
use std::ffi::OsString;
use std::time::{Duration, Instant};
use tokio::time::sleep_until;
use vault_env_supervisor::renew::{self, Step};
use vault_env_supervisor::{Event, Status, Supervisor, signals};

/// How long revocations at exit may take, all together: well inside Kubernetes' default 30 s
/// grace period, after the app's own stop time.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);

/// New secrets, ready to start the app with.
struct Prepared {
    env: Vec<(OsString, OsString)>,
    resolved: Resolved,
    token: Option<(Token, Client)>,
}

/// What to do once the app has stopped.
enum Then {
    Restart(Box<Prepared>),
    Exit(u8),
}

enum Phase {
    Running,
    /// The app was asked to stop (SIGKILL at `kill_at`); then `then`.
    Stopping {
        kill_at: Instant,
        then: Then,
    },
}

/// Why fetching replacement secrets failed.
enum PrepareError {
    NoSession,
    TimedOut(Duration),
    Login(auth::AuthError),
    Vars(Vec<VarError>),
}

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrepareError::NoSession => f.write_str("no Vault session"),
            PrepareError::TimedOut(d) => write!(f, "Vault did not answer within {}", humantime::format_duration(*d)),
            PrepareError::Login(e) => write!(f, "{e}"),
            PrepareError::Vars(errors) => f.write_str(&crate::config::reader::join(errors)),
        }
    }
}

pub struct Daemon<'a> {
    config: &'a Config,
    env: &'a Env,
    plan: &'a Plan,
    app: App,
    supervisor: Supervisor,
    session: Option<Session>,
    leases: Leases,
    stopping: bool,
}

impl<'a> Daemon<'a> {
    pub async fn new(config: &'a Config, env: &'a Env, plan: &'a Plan, app: App, supervisor: Supervisor, mut session: Option<Session>) -> Daemon<'a> {
        // From here on the keeper schedules retries itself, bounded by each lease's time left.
        if let Some(s) = session.as_mut() {
            s.login_client = s.login_client.impatient();
            s.client = s.client.impatient();
        }
        let leases = Leases::new(config.daemon_settings.restart_splay);
        let mut d = Daemon { config, env, plan, app, supervisor, session, leases, stopping: false };
        d.track_token().await;
        d.track_leases();
        d
    }

    async fn track_token(&mut self) {
        let Some(s) = &self.session else { return };
        let (ttl, renewable) = match s.token.source {
            TokenSource::Login { .. } => (s.token.lease_duration, s.token.renewable),
            // A given token: ask Vault for its TTL.
            _ => match s.client.lookup_self().await {
                Ok(Some(info)) => {
                    let data = info.data_map();
                    let ttl = data.and_then(|d| d.get("ttl")).and_then(serde_json::Value::as_u64).unwrap_or(0);
                    let renewable = data.and_then(|d| d.get("renewable")).and_then(serde_json::Value::as_bool).unwrap_or(false);
                    (ttl, renewable)
                }
                _ => (0, false),
            },
        };
        if ttl > 0 {
            tracing::info!(ttl, renewable, "keeping the Vault token alive");
            self.leases.track(Renewable::Token, Instant::now(), Duration::from_secs(ttl), renewable);
        }
    }

    /// Tracks every lease from when Vault granted it.
    fn track_leases(&mut self) {
        self.leases.clear_leases();
        for lease in self.session.iter().flat_map(|s| s.resolved.leases.iter()) {
            tracing::info!(path = %lease.path, lease = %short_id(&lease.lease_id), ttl = lease.duration, renewable = lease.renewable, "tracking lease");
            self.leases.track(Renewable::Lease(lease.clone()), lease.granted_at, Duration::from_secs(lease.duration), lease.renewable);
        }
    }

    fn child_env(&self) -> Vec<(OsString, OsString)> {
        let empty = Resolved::default();
        let resolved = self.session.as_ref().map_or(&empty, |s| &s.resolved);
        let token = self.session.as_ref().and_then(|s| s.app_token(self.config));
        child_env::build(self.env, self.config, resolved, token)
    }

    fn spawn(&self, env: &[(OsString, OsString)]) -> Result<u32, Error> {
        let pid = self.supervisor.spawn(&self.app.program, &self.app.argv0, &self.app.args, env)?;
        tracing::info!(pid, program = %self.app.program.display(), "started the app");
        Ok(pid)
    }

    /// Runs until the app exits for good; returns vault-env's exit code.
    pub async fn run(mut self) -> Result<u8, Error> {
        self.spawn(&self.child_env())?;
        let mut phase = Phase::Running;
        loop {
            let timer = self.next_timer(&phase);
            tokio::select! {
                event = self.supervisor.next() => match event {
                    None => return Err(Error::Internal("signals can no longer be read".into())),
                    Some(Event::Signal(sig)) => {
                        tracing::debug!("received {}", signals::name(sig));
                        if signals::is_termination(sig) {
                            self.stopping = true;
                        }
                    }
                    Some(Event::Reaped { pid, status }) => tracing::debug!(pid, ?status, "reaped an orphaned process"),
                    Some(Event::Exited { pid, status }) => {
                        tracing::info!(pid, code = status.exit_code(), "the app exited{}", describe(status));
                        match std::mem::replace(&mut phase, Phase::Running) {
                            Phase::Stopping { then: Then::Restart(next), .. } if !self.stopping => self.start_replacement(*next).await?,
                            // Stopped for good in the middle of a restart: the new secrets go too.
                            Phase::Stopping { then: Then::Restart(next), .. } => return Ok(self.shutdown(status.exit_code(), Some(*next)).await),
                            Phase::Stopping { then: Then::Exit(code), .. } => return Ok(self.shutdown(code, None).await),
                            _ => return Ok(self.shutdown(status.exit_code(), None).await),
                        }
                    }
                },
                _ = sleep_until(tokio::time::Instant::from_std(timer)) => phase = self.on_timer(phase).await,
            }
        }
    }

    fn next_timer(&self, phase: &Phase) -> Instant {
        match phase {
            Phase::Stopping { kill_at, .. } => *kill_at,
            Phase::Running => self.leases.next_due().unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600)),
        }
    }

    async fn on_timer(&mut self, phase: Phase) -> Phase {
        let now = Instant::now();
        match phase {
            Phase::Stopping { kill_at, then } if now >= kill_at => {
                let timeout = humantime::format_duration(self.config.daemon_settings.stop_timeout);
                tracing::warn!("the app did not stop within {timeout}; sending SIGKILL");
                self.supervisor.signal_app(signals::SIGKILL);
                Phase::Stopping { kill_at: now + Duration::from_secs(3600), then }
            }
            Phase::Stopping { .. } => phase,
            Phase::Running => {
                let Some(session) = &self.session else { return Phase::Running };
                let client = session.client.clone();
                match self.leases.renew_due(&client, now).await {
                    Due::Nothing => Phase::Running,
                    Due::Replace { index, what, expires, token_refused } => self.on_lease_end(index, what, expires, token_refused).await,
                }
            }
        }
    }

    /// Item `index` (a lease or the token) can't be extended: act per `VAULT_ENV_ON_LEASE_END`.
    async fn on_lease_end(&mut self, index: usize, what: String, expires: Instant, token_refused: bool) -> Phase {
        let now = Instant::now();
        let can_relogin = self.session.as_ref().is_some_and(|s| !matches!(s.token.source, TokenSource::Env));
        let policy = self.config.daemon_settings.on_lease_end;
        let left = expires.saturating_duration_since(now).as_secs();
        let token_ends = self.leases.token_capped() || token_refused;
        match lease_end(policy, self.leases.is_token(index) || token_refused, can_relogin, token_ends, now, expires) {
            LeaseEnd::Forget => {
                tracing::warn!("{what} ends in {left}s and can't be extended; leaving the app running (VAULT_ENV_ON_LEASE_END=ignore)");
                self.leases.forget(index);
                Phase::Running
            }
            LeaseEnd::ExitAtExpiry => {
                tracing::info!("{what} can't be extended; stopping the app when it expires in {left}s");
                self.leases.set_due(index, Step::Replace(expires));
                Phase::Running
            }
            LeaseEnd::ExitNow => self.stop_app(format!("{what} expired"), EXIT_LEASE_ENDED),
            LeaseEnd::Replace { relogin } => match self.prepare(relogin, expires).await {
                Ok(next) => {
                    tracing::info!("{what} can't be extended (ends in {left}s); restarting the app with new secrets");
                    let kill_at = instant_after(self.config.daemon_settings.stop_timeout);
                    self.supervisor.signal_app(self.config.daemon_settings.stop_signal);
                    Phase::Stopping { kill_at, then: Then::Restart(Box::new(next)) }
                }
                Err(e) if Instant::now() >= expires => {
                    tracing::error!("{what} expired and no replacement could be fetched: {e}");
                    self.stop_app(format!("{what} expired"), EXIT_LEASE_ENDED)
                }
                Err(e) => {
                    let attempt = self.leases.bump_attempt(index);
                    let retry = renew::retry_at(Instant::now(), attempt, expires, fastrand::f64());
                    let wait = retry.saturating_duration_since(now).as_secs();
                    tracing::warn!("{what}: fetching new secrets failed ({e}); retrying in {wait}s, {left}s before it expires");
                    self.leases.set_due(index, Step::Replace(retry));
                    Phase::Running
                }
            },
        }
    }

    fn stop_app(&self, why: String, code: u8) -> Phase {
        let s = &self.config.daemon_settings;
        let (signal, timeout) = (signals::name(s.stop_signal), humantime::format_duration(s.stop_timeout));
        tracing::warn!("{why}; stopping the app with {signal} (SIGKILL after {timeout}), then exiting {code}");
        self.supervisor.signal_app(s.stop_signal);
        Phase::Stopping { kill_at: instant_after(s.stop_timeout), then: Then::Exit(code) }
    }

    /// Fetches every secret again (after a new login when `relogin`), and builds the app's new
    /// environment; gives up at `deadline` (the old secrets' expiry), however Vault behaves.
    async fn prepare(&self, relogin: bool, deadline: Instant) -> Result<Prepared, PrepareError> {
        let left = deadline.saturating_duration_since(Instant::now()).max(renew::RETRY_FLOOR);
        tokio::time::timeout(left, self.prepare_now(relogin)).await.unwrap_or(Err(PrepareError::TimedOut(left)))
    }

    async fn prepare_now(&self, relogin: bool) -> Result<Prepared, PrepareError> {
        let Some(session) = self.session.as_ref() else { return Err(PrepareError::NoSession) };
        let (client, token) = if relogin {
            let token = auth::token(&session.login_client, &self.config.auth).await.map_err(PrepareError::Login)?;
            tracing::info!(source = %token.source, "obtained a new Vault token");
            let client = session.login_client.with_token(token.secret.clone());
            (client.clone(), Some((token, client)))
        } else {
            (session.client.clone(), None)
        };
        let resolved = resolve::fetch_and_render(&client, self.plan, self.config).await.map_err(PrepareError::Vars)?;
        let app_token = match &token {
            Some((t, _)) => Some(&t.secret),
            None => session.app_token(self.config),
        };
        let env = child_env::build(self.env, self.config, &resolved, app_token.filter(|_| self.config.auth.login_requested));
        Ok(Prepared { env, resolved, token })
    }

    /// The old app has stopped: switch to the new secrets, start the app, drop the old leases.
    async fn start_replacement(&mut self, next: Prepared) -> Result<(), Error> {
        let Some(session) = self.session.as_mut() else { return Ok(()) };
        let old_leases = std::mem::replace(&mut session.resolved, next.resolved).leases;
        let old_client = session.client.clone();
        let old_token_obtained = matches!(session.token.source, TokenSource::Login { .. });
        let new_token = next.token.is_some();
        if let Some((token, client)) = next.token {
            session.token = token;
            session.client = client;
        }
        self.spawn(&next.env)?;
        // The old token (when replaced and ours) takes its leases with it; else lease by lease.
        revoke(vec![Revocation { client: old_client, token: new_token && old_token_obtained, leases: old_leases }], true).await;
        if new_token {
            self.track_token().await;
        }
        self.track_leases();
        Ok(())
    }

    /// The app is gone for good: revoke what vault-env obtained (unless told not to), including
    /// `pending` (the secrets of a restart that a termination signal cut short), all at once and
    /// within [`SHUTDOWN_BUDGET`] so that it fits in Kubernetes' grace period. Revoking a token
    /// revokes the leases it created: then no per-lease call is made (a policy may refuse those).
    async fn shutdown(&mut self, code: u8, pending: Option<Prepared>) -> u8 {
        if self.config.daemon_settings.terminate_descendants {
            // Blocks this (current-thread) runtime for up to 2 s; nothing else runs at exit.
            self.supervisor.terminate_descendants(Duration::from_secs(2));
        }
        let Some(session) = &self.session else { return code };
        let revoke_setting = self.config.revoke_token;
        let obtained = matches!(session.token.source, TokenSource::Login { .. });
        let token = revoke_setting == Some(true) || (revoke_setting.is_none() && obtained);
        let mut sets = vec![Revocation { client: session.client.clone(), token, leases: session.resolved.leases.clone() }];
        if let Some(next) = pending {
            match next.token {
                // A new token was obtained for the restart: it and its leases go (always: it was ours).
                Some((_, client)) => sets.push(Revocation { client, token: true, leases: next.resolved.leases }),
                None => sets[0].leases.extend(next.resolved.leases),
            }
        }
        revoke(sets, revoke_setting != Some(false)).await;
        code
    }
}

/// A token and the leases it created, to be revoked.
struct Revocation {
    client: Client,
    /// Revoke the token (its leases go with it); else the leases one by one.
    token: bool,
    leases: Vec<crate::resolve::Lease>,
}

/// Revokes `sets`, each call tried once, at most [`RENEWALS_IN_FLIGHT`] lease revocations at a
/// time (1,000 leases must not open 1,000 connections to Vault at once), within
/// [`SHUTDOWN_BUDGET`] in all: a hung Vault delays neither the exit nor the loop by more.
/// `leases` says whether leases are revoked one by one when their token is not.
async fn revoke(sets: Vec<Revocation>, leases: bool) {
    use futures_util::StreamExt;
    let (mut tokens, mut lease_calls) = (Vec::new(), Vec::new());
    for set in sets {
        let client = set.client.impatient_once();
        if set.token {
            tokens.push((client, set.leases.len()));
        } else if leases {
            lease_calls.extend(set.leases.into_iter().map(|lease| (client.clone(), lease)));
        }
    }
    let tokens = futures_util::future::join_all(tokens.into_iter().map(|(client, count)| async move {
        match client.revoke_self().await {
            Ok(()) => tracing::info!(leases = count, "token revoked, and the leases it created with it"),
            // Refused: the token is no longer valid (revoked from outside, or expired), and its leases went with it.
            Err(e) if e.is_denied() => tracing::info!("the token was already revoked or expired ({e})"),
            Err(e) => tracing::warn!("could not revoke the token: {e}"),
        }
    }));
    let leases = futures_util::stream::iter(lease_calls.into_iter().map(|(client, lease)| async move {
        match client.revoke_lease(&lease.lease_id).await {
            Ok(()) => tracing::info!(path = %lease.path, lease = %short_id(&lease.lease_id), "lease revoked"),
            // A policy without sys/leases/revoke: the lease ends at its TTL anyway.
            Err(e) if e.is_denied() => tracing::info!(path = %lease.path, "not revoking the lease ({e}): it ends at its TTL"),
            Err(e) => tracing::warn!(path = %lease.path, "could not revoke the lease: {e}"),
        }
    }))
    .buffer_unordered(RENEWALS_IN_FLIGHT)
    .for_each(|()| async {});
    if tokio::time::timeout(SHUTDOWN_BUDGET, async { tokio::join!(tokens, leases) }).await.is_err() {
        tracing::warn!("Vault did not answer the revocations within {}s; going on", SHUTDOWN_BUDGET.as_secs());
    }
}

/// What to do when a lease (or the token) can't be extended.
#[derive(Debug, PartialEq)]
enum LeaseEnd {
    /// `ignore`: stop tracking it, leave the app running.
    Forget,
    /// `exit`, before expiry: come back at expiry.
    ExitAtExpiry,
    /// `exit` at (or after) expiry: stop the app, exit 75.
    ExitNow,
    /// `restart`: fetch new secrets, logging in again first when `relogin`.
    Replace { relogin: bool },
}

/// The decision, pure. A token that can't be replaced (it was given, not obtained by a login) is
/// treated as `exit`: new secrets would die with it. A capped token caps every lease, so replacing
/// a lease then logs in again too.
fn lease_end(policy: OnLeaseEnd, is_token: bool, can_relogin: bool, token_capped: bool, now: Instant, expires: Instant) -> LeaseEnd {
    let policy = match policy {
        OnLeaseEnd::Restart if is_token && !can_relogin => OnLeaseEnd::Exit,
        p => p,
    };
    match policy {
        OnLeaseEnd::Ignore => LeaseEnd::Forget,
        OnLeaseEnd::Exit if now < expires => LeaseEnd::ExitAtExpiry,
        OnLeaseEnd::Exit => LeaseEnd::ExitNow,
        OnLeaseEnd::Restart => LeaseEnd::Replace { relogin: can_relogin && (is_token || token_capped) },
    }
}

fn describe(status: Status) -> String {
    match status {
        Status::Code(_) => String::new(),
        Status::Signaled(sig) => format!(" (killed by {})", signals::name(sig)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_end_decisions() {
        let now = Instant::now();
        let (later, earlier) = (now + Duration::from_secs(30), now - Duration::from_secs(1));
        use OnLeaseEnd::{Exit, Ignore, Restart};
        let cases = [
            // (policy, is token, can log in again, token capped, expires) → decision
            ((Restart, false, true, false, later), LeaseEnd::Replace { relogin: false }),
            ((Restart, false, true, true, later), LeaseEnd::Replace { relogin: true }),
            ((Restart, true, true, true, later), LeaseEnd::Replace { relogin: true }),
            ((Restart, false, false, true, later), LeaseEnd::Replace { relogin: false }),
            ((Restart, true, false, true, later), LeaseEnd::ExitAtExpiry),
            ((Restart, true, false, true, earlier), LeaseEnd::ExitNow),
            ((Exit, false, true, false, later), LeaseEnd::ExitAtExpiry),
            ((Exit, false, true, false, now), LeaseEnd::ExitNow),
            ((Ignore, true, false, true, earlier), LeaseEnd::Forget),
        ];
        for ((policy, token, relogin, capped, expires), want) in cases {
            assert_eq!(lease_end(policy, token, relogin, capped, now, expires), want, "{policy:?} token={token} relogin={relogin} capped={capped}");
        }
    }
}
