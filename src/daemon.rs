//! Daemon mode: vault-env stays as the app's parent (PID 1 in a container), keeps the Vault token
//! and every lease alive, and replaces secrets before they expire.
//!
//! The loop has one arm per source of work, as tini's does:
//! - the supervisor's events: a signal (forwarded already), the app's exit, a reaped orphan;
//! - the next timer: a token or lease renewal (70–75 % of its TTL), a replacement (a capped or
//!   non-renewable lease, [`renew::replace_lead`] before expiry), a retry, or the stop timeout.
//!
//! Replacing = fetch every secret again (logging in again first if the token itself is capped),
//! then stop the app gracefully (`VAULT_ENV_STOP_SIGNAL`, `VAULT_ENV_STOP_TIMEOUT`, SIGKILL) and
//! start it with the new values; the old leases are revoked. A Vault outage only delays this: the
//! app is stopped (exit 75) only when a secret really expires with no replacement.

use crate::auth::{self, Token, TokenSource};
use crate::child_env;
use crate::client::Client;
use crate::config::{Config, Env, OnLeaseEnd};
use crate::error::{EXIT_LEASE_ENDED, Error};
use crate::resolve::{self, Lease, Plan, Resolved};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::time::sleep_until;
use vault_env_supervisor::renew::{self, Step};
use vault_env_supervisor::{Event, Status, Supervisor, signals};

/// The command to run.
pub struct App {
    pub program: PathBuf,
    pub argv0: OsString,
    pub args: Vec<OsString>,
}

/// What vault-env holds from Vault: the client, the token, and the resolved secrets.
pub struct Session {
    pub base: Client,
    pub client: Client,
    pub token: Token,
    pub resolved: Resolved,
}

impl Session {
    /// Logs in (or reads the token) and resolves every reference.
    pub async fn open(config: &Config, plan: &Plan) -> Result<Session, Error> {
        let base = Client::new(config)?;
        let token = auth::token(&base, &config.auth).await?;
        tracing::debug!(source = %token.source, "using token");
        let client = base.with_token(token.secret.clone());
        let resolved = resolve::fetch_and_render(&client, plan, config).await.map_err(Error::Vars)?;
        tracing::info!(
            variables = resolved.values.len() + resolved.from_path.len(),
            requests = plan.fetches.len(),
            leases = resolved.leases.len(),
            "secrets resolved"
        );
        Ok(Session { base, client, token, resolved })
    }

    /// The token for the app when it asked for one (`VAULT_TOKEN=vault:login`).
    pub fn app_token<'a>(&'a self, config: &Config) -> Option<&'a crate::SecretString> {
        config.auth.login_requested.then_some(&self.token.secret)
    }

    /// Whether daemon mode is needed to keep these secrets valid.
    pub fn needs_daemon(&self, config: &Config) -> Option<String> {
        if let Some(l) = self.resolved.leases.first() {
            return Some(format!("{} secret(s) have leases (e.g. {}, ttl {}s)", self.resolved.leases.len(), l.path, l.duration));
        }
        if config.auth.login_requested && self.token.renewable && self.token.lease_duration > 0 {
            return Some(format!("the app's vault:login token must be renewed (ttl {}s)", self.token.lease_duration));
        }
        None
    }
}

/// A lease id as it may be logged: the path and the first characters of the id.
pub fn short_id(id: &str) -> String {
    match id.rsplit_once('/') {
        Some((path, tail)) => format!("{path}/{}…", tail.chars().take(4).collect::<String>()),
        None => format!("{}…", id.chars().take(4).collect::<String>()),
    }
}

/// One lease (or the token) and when to act on it next.
struct Tracked {
    timing: renew::Lease,
    due: Step,
    attempt: u32,
}

impl Tracked {
    fn new(timing: renew::Lease, splay: Duration) -> Tracked {
        Tracked { timing, due: schedule(&timing, splay), attempt: 0 }
    }

    /// A renewal granted `ttl_secs` at `now`.
    fn renewed(&mut self, now: Instant, ttl_secs: u64, splay: Duration) {
        self.timing = self.timing.renewed(now, Duration::from_secs(ttl_secs));
        self.due = schedule(&self.timing, splay);
        self.attempt = 0;
    }

    /// A renewal failed at `now`: retry with backoff. True when the lease has already expired.
    fn failed(&mut self, now: Instant) -> bool {
        self.attempt += 1;
        self.due = Step::Renew(renew::retry_at(now, self.attempt, self.timing.expires_at()));
        now >= self.timing.expires_at()
    }
}

fn schedule(timing: &renew::Lease, splay: Duration) -> Step {
    match timing.next_step(fastrand::f64()) {
        Step::Replace(at) if !splay.is_zero() => {
            let earlier = splay.mul_f64(fastrand::f64());
            Step::Replace(at.checked_sub(earlier).unwrap_or(at).max(timing.granted_at))
        }
        step => step,
    }
}

struct TrackedLease {
    lease: Lease,
    tracked: Tracked,
}

/// New secrets, ready to start the app with.
struct Prepared {
    env: Vec<(OsString, OsString)>,
    resolved: Resolved,
    token: Option<(Token, Client)>,
}

enum Phase {
    Running,
    /// The app was asked to stop; start it again with `next` when it has.
    Restarting {
        kill_at: Instant,
        next: Box<Prepared>,
    },
    /// The app was asked to stop; then exit with `code`.
    Exiting {
        kill_at: Instant,
        code: u8,
    },
}

/// Which tracked item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Token,
    Lease(usize),
}

/// What a due timer asks for.
enum Due {
    Nothing,
    /// A lease or the token can't be extended: replace (or per policy, exit/ignore). `expires` is when it ends.
    Replace {
        target: Target,
        what: String,
        expires: Instant,
    },
}

pub struct Daemon<'a> {
    config: &'a Config,
    env: &'a Env,
    plan: &'a Plan,
    app: App,
    supervisor: Supervisor,
    session: Option<Session>,
    token: Option<Tracked>,
    leases: Vec<TrackedLease>,
    stopping: bool,
}

impl<'a> Daemon<'a> {
    pub async fn new(config: &'a Config, env: &'a Env, plan: &'a Plan, app: App, supervisor: Supervisor, mut session: Option<Session>) -> Daemon<'a> {
        // From here on the keeper schedules retries itself, bounded by each lease's time left.
        if let Some(s) = session.as_mut() {
            s.base = s.base.impatient();
            s.client = s.client.impatient();
        }
        let mut d = Daemon { config, env, plan, app, supervisor, session, token: None, leases: Vec::new(), stopping: false };
        d.track_token().await;
        d.track_leases(Instant::now());
        d
    }

    fn splay(&self) -> Duration {
        self.config.daemon_settings.restart_splay
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
        self.token = (ttl > 0).then(|| {
            tracing::info!(ttl, renewable, "keeping the Vault token alive");
            Tracked::new(renew::Lease::new(Instant::now(), Duration::from_secs(ttl), renewable), self.splay())
        });
    }

    fn track_leases(&mut self, now: Instant) {
        let splay = self.splay();
        self.leases = self.session.iter().flat_map(|s| s.resolved.leases.iter()).map(|lease| {
            let timing = renew::Lease::new(now, Duration::from_secs(lease.duration), lease.renewable);
            tracing::info!(path = %lease.path, lease = %short_id(&lease.lease_id), ttl = lease.duration, renewable = lease.renewable, "tracking lease");
            TrackedLease { lease: lease.clone(), tracked: Tracked::new(timing, splay) }
        }).collect();
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
                    None => return Err(Error::Usage("the signal thread stopped".into())),
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
                            Phase::Restarting { next, .. } if !self.stopping => self.start_replacement(*next).await?,
                            Phase::Exiting { code, .. } => return Ok(self.shutdown(code).await),
                            _ => return Ok(self.shutdown(status.exit_code()).await),
                        }
                    }
                },
                _ = sleep_until(tokio::time::Instant::from_std(timer)) => phase = self.on_timer(phase).await,
            }
        }
    }

    fn next_timer(&self, phase: &Phase) -> Instant {
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        match phase {
            Phase::Restarting { kill_at, .. } | Phase::Exiting { kill_at, .. } => *kill_at,
            Phase::Running => self.token.iter().chain(self.leases.iter().map(|l| &l.tracked)).map(|t| t.due.at()).min().unwrap_or(far),
        }
    }

    async fn on_timer(&mut self, phase: Phase) -> Phase {
        let now = Instant::now();
        match phase {
            Phase::Restarting { kill_at, .. } | Phase::Exiting { kill_at, .. } if now >= kill_at => {
                tracing::warn!(
                    "the app did not stop within {}; sending SIGKILL",
                    humantime::format_duration(self.config.daemon_settings.stop_timeout)
                );
                self.supervisor.signal_app(9);
                return phase_with_kill_at(phase, now + Duration::from_secs(3600));
            }
            Phase::Restarting { .. } | Phase::Exiting { .. } => return phase,
            Phase::Running => {}
        }
        match self.renew_due(now).await {
            Due::Nothing => Phase::Running,
            Due::Replace { target, what, expires } => self.on_lease_end(now, target, what, expires).await,
        }
    }

    /// Renews whatever is due; reports the first lease (or the token) that needs replacing.
    async fn renew_due(&mut self, now: Instant) -> Due {
        let Some(session) = &self.session else { return Due::Nothing };
        let client = session.client.clone();
        let splay = self.splay();
        if let Some(t) = self.token.as_mut().filter(|t| t.due.at() <= now) {
            match t.due {
                Step::Renew(_) => match client.renew_self(t.timing.wanted.as_secs()).await {
                    Ok(auth) => {
                        t.renewed(now, auth.lease_duration, splay);
                        tracing::info!(ttl = auth.lease_duration, capped = !t.timing.extendable(), "token renewed");
                    }
                    Err(e) => {
                        let expired = t.failed(now);
                        tracing::warn!(attempt = t.attempt, "token renewal failed: {e}; retrying");
                        if expired {
                            return Due::Replace { target: Target::Token, what: "the Vault token".into(), expires: t.timing.expires_at() };
                        }
                    }
                },
                Step::Replace(_) => return Due::Replace { target: Target::Token, what: "the Vault token".into(), expires: t.timing.expires_at() },
            }
        }
        for (i, l) in self.leases.iter_mut().enumerate().filter(|(_, l)| l.tracked.due.at() <= now) {
            let target = Target::Lease(i);
            let t = &mut l.tracked;
            let what = format!("lease {} ({})", short_id(&l.lease.lease_id), l.lease.path);
            match t.due {
                Step::Renew(_) => match client.renew_lease(&l.lease.lease_id, t.timing.wanted.as_secs()).await {
                    Ok(s) => {
                        t.renewed(now, s.lease_duration, splay);
                        tracing::info!(path = %l.lease.path, lease = %short_id(&l.lease.lease_id), ttl = s.lease_duration, capped = !t.timing.extendable(), "lease renewed");
                    }
                    // 400 "lease not found"/"invalid lease": revoked or expired; nothing to renew.
                    Err(e) if e.status() == Some(400) => {
                        tracing::warn!(path = %l.lease.path, "{what} can no longer be renewed: {e}");
                        return Due::Replace { target, what, expires: now };
                    }
                    Err(e) => {
                        let expired = t.failed(now);
                        tracing::warn!(path = %l.lease.path, attempt = t.attempt, "lease renewal failed: {e}; retrying");
                        if expired {
                            return Due::Replace { target, what, expires: t.timing.expires_at() };
                        }
                    }
                },
                Step::Replace(_) => return Due::Replace { target, what, expires: t.timing.expires_at() },
            }
        }
        Due::Nothing
    }

    /// A lease (or the token) can't be extended: act per `VAULT_ENV_ON_LEASE_END`.
    async fn on_lease_end(&mut self, now: Instant, target: Target, what: String, expires: Instant) -> Phase {
        let token = target == Target::Token;
        let can_relogin = self.session.as_ref().is_some_and(|s| !matches!(s.token.source, TokenSource::Env));
        let policy = match self.config.daemon_settings.on_lease_end {
            // Without a way to get a new token, new secrets would die with the old one.
            OnLeaseEnd::Restart if token && !can_relogin => OnLeaseEnd::Exit,
            p => p,
        };
        let left = expires.saturating_duration_since(now).as_secs();
        match policy {
            OnLeaseEnd::Ignore => {
                tracing::warn!("{what} ends in {left}s and can't be extended; leaving the app running (VAULT_ENV_ON_LEASE_END=ignore)");
                self.forget(target);
                Phase::Running
            }
            OnLeaseEnd::Exit if now < expires => {
                tracing::info!("{what} can't be extended; stopping the app when it expires in {left}s");
                self.set_due(target, Step::Replace(expires));
                Phase::Running
            }
            OnLeaseEnd::Exit => self.stop_app(format!("{what} expired"), EXIT_LEASE_ENDED),
            OnLeaseEnd::Restart => match self.prepare(can_relogin && (token || self.token_capped())).await {
                Ok(next) => {
                    tracing::info!("{what} can't be extended (ends in {left}s); restarting the app with new secrets");
                    let kill_at = Instant::now() + self.config.daemon_settings.stop_timeout;
                    self.supervisor.signal_app(self.config.daemon_settings.stop_signal);
                    Phase::Restarting { kill_at, next: Box::new(next) }
                }
                Err(e) if Instant::now() >= expires => {
                    tracing::error!("{what} expired and no replacement could be fetched: {e}");
                    self.stop_app(format!("{what} expired"), EXIT_LEASE_ENDED)
                }
                Err(e) => {
                    let attempt = self.bump_attempt(target);
                    let retry = renew::retry_at(Instant::now(), attempt, expires);
                    tracing::warn!(
                        "{what}: fetching new secrets failed ({e}); retrying in {}s, {left}s before it expires",
                        retry.saturating_duration_since(now).as_secs()
                    );
                    self.set_due(target, Step::Replace(retry));
                    Phase::Running
                }
            },
        }
    }

    fn token_capped(&self) -> bool {
        self.token.as_ref().is_some_and(|t| !t.timing.extendable())
    }

    fn stop_app(&self, why: String, code: u8) -> Phase {
        let s = &self.config.daemon_settings;
        tracing::warn!(
            "{why}; stopping the app with {} (SIGKILL after {}), then exiting {code}",
            signals::name(s.stop_signal),
            humantime::format_duration(s.stop_timeout)
        );
        self.supervisor.signal_app(s.stop_signal);
        Phase::Exiting { kill_at: Instant::now() + s.stop_timeout, code }
    }

    fn tracked_mut(&mut self, target: Target) -> Option<&mut Tracked> {
        match target {
            Target::Token => self.token.as_mut(),
            Target::Lease(i) => self.leases.get_mut(i).map(|l| &mut l.tracked),
        }
    }

    fn set_due(&mut self, target: Target, due: Step) {
        if let Some(t) = self.tracked_mut(target) {
            t.due = due;
        }
    }

    fn bump_attempt(&mut self, target: Target) -> u32 {
        self.tracked_mut(target).map_or(1, |t| {
            t.attempt += 1;
            t.attempt
        })
    }

    fn forget(&mut self, target: Target) {
        match target {
            Target::Token => self.token = None,
            Target::Lease(i) if i < self.leases.len() => drop(self.leases.remove(i)),
            Target::Lease(_) => {}
        }
    }

    /// Fetches every secret again (after a new login when `relogin`), and builds the app's new environment.
    async fn prepare(&self, relogin: bool) -> Result<Prepared, String> {
        let session = self.session.as_ref().ok_or("no Vault session")?;
        let (client, token) = if relogin {
            let token = auth::token(&session.base, &self.config.auth).await.map_err(|e| e.to_string())?;
            tracing::info!(source = %token.source, "obtained a new Vault token");
            let client = session.base.with_token(token.secret.clone());
            (client.clone(), Some((token, client)))
        } else {
            (session.client.clone(), None)
        };
        let resolved = resolve::fetch_and_render(&client, self.plan, self.config)
            .await
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
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
        for lease in &old_leases {
            if let Err(e) = old_client.revoke_lease(&lease.lease_id).await {
                tracing::debug!(path = %lease.path, "revoking the old lease failed: {e}");
            }
        }
        if new_token && old_token_obtained && old_client.revoke_self().await.is_ok() {
            tracing::debug!("revoked the previous token");
        }
        if new_token {
            self.track_token().await;
        }
        self.track_leases(Instant::now());
        Ok(())
    }

    /// The app is gone for good: revoke what vault-env obtained (unless told not to), clean up.
    async fn shutdown(&mut self, code: u8) -> u8 {
        if self.config.daemon_settings.terminate_descendants {
            self.supervisor.terminate_descendants(Duration::from_secs(2));
        }
        let Some(session) = &self.session else { return code };
        let revoke = self.config.revoke_token;
        if revoke != Some(false) {
            for lease in &session.resolved.leases {
                match session.client.revoke_lease(&lease.lease_id).await {
                    Ok(()) => tracing::info!(path = %lease.path, lease = %short_id(&lease.lease_id), "lease revoked"),
                    Err(e) => tracing::warn!(path = %lease.path, "could not revoke the lease: {e}"),
                }
            }
        }
        let obtained = matches!(session.token.source, TokenSource::Login { .. });
        if revoke == Some(true) || (revoke.is_none() && obtained) {
            match session.client.revoke_self().await {
                Ok(()) => tracing::info!("token revoked"),
                Err(e) => tracing::warn!("could not revoke the token: {e}"),
            }
        }
        code
    }
}

fn phase_with_kill_at(phase: Phase, kill_at: Instant) -> Phase {
    match phase {
        Phase::Restarting { next, .. } => Phase::Restarting { kill_at, next },
        Phase::Exiting { code, .. } => Phase::Exiting { kill_at, code },
        Phase::Running => Phase::Running,
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
    fn short_id_hides_most_of_the_lease_id() {
        assert_eq!(short_id("database/creds/app/EOYXC0q047th4R4u8PH1moTi"), "database/creds/app/EOYX…");
        assert_eq!(short_id("abcdefgh"), "abcd…");
    }
}
