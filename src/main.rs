//! The `vault-env` binary: the whole flow, top to bottom, and `Result` → exit code.
//!
//! `#![no_main]`: the C runtime calls [`main`] directly, without Rust's runtime start, which costs
//! about 0.07 ms of each start with glibc (it reads the main thread's stack bounds from
//! `/proc/self/maps` and gives each thread an alternate signal stack). What of it vault-env keeps
//! (standard descriptors, SIGPIPE, the arguments) is `vault_env_supervisor::entry`.
#![no_main]

use std::ffi::OsString;
use vault_env::cli::{self, Parsed};
use vault_env::config::{Config, Env};
use vault_env::daemon::Daemon;
use vault_env::resolve::{self, Resolved};
use vault_env::session::{App, Session};
use vault_env::{Error, child_env, logging};
use vault_env_supervisor::{Options, Supervisor};

/// The static builds allocate with dlmalloc instead of musl's malloc (mallocng). mallocng maps a
/// group of pages for each size class in use and unmaps it when the group is free again: 64 mmaps
/// and 26 munmaps in one start with 10 secrets, each mapped page faulted in after, about 30 % of
/// vault-env's CPU time in that start. dlmalloc takes its memory 64 KiB at a time and keeps it (up
/// to 2 MiB free at the top): 19 mmaps and one munmap, 0.3 ms sooner to exec; the same resident
/// memory with 10 leases, 0.5-0.75 MiB more at the peak with 1,000 (docs/benchmarks.md).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// vault-env's whole run, and its exit code. Not inlined: the linkers' wrappers know vault-env's
/// program by this function (scripts/link/hot-order).
#[inline(never)]
fn main(argv: Vec<OsString>) -> u8 {
    match run(argv) {
        Ok(code) => code,
        Err(e) => {
            // Not `eprint!`, which panics when stderr is a closed pipe.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), e.report().as_bytes());
            e.exit_code()
        }
    }
}

mod c_main {
    use std::ffi::{c_char, c_int};
    use std::io::Write;

    /// The C runtime's entry point: what vault-env keeps of Rust's start, then [`super::main`].
    #[allow(unsafe_code)]
    #[unsafe(no_mangle)]
    extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
        // SAFETY: these are the arguments the C runtime passes to main.
        let args = unsafe { vault_env_supervisor::entry::start(argc, argv) };
        let code = super::main(args);
        // What Rust's runtime does after `fn main` returns: stdout is line-buffered.
        let _ = std::io::stdout().flush();
        c_int::from(code)
    }
}

fn run(argv: Vec<OsString>) -> Result<u8, Error> {
    // First of all: the app (same uid, in daemon mode beside us) must not read our memory, our
    // environment or a core file of ours; the app itself gets both back at its exec.
    let hardened = vault_env_supervisor::harden();
    let env = Env::from_process();
    let explicit_daemon = env.get(vault_env::config::VAULT_ENV_DAEMON).and_then(|v| v.to_str()).and_then(vault_env::config::parse_bool) == Some(true);
    if explicit_daemon {
        // Before any other thread exists: from now on a signal waits for the app instead of
        // taking its default action (or, as PID 1, being dropped).
        block_signals();
    }
    let args = match cli::parse(argv)? {
        Parsed::Run(args) => args,
        Parsed::Done(code) => return Ok(code),
        Parsed::CopyTo(dir) => return copy_to(&dir).map(|()| 0),
    };
    let config = Config::from_env(&env).map_err(Error::Config)?;
    logging::init(&config);
    if let Err(e) = hardened {
        tracing::warn!("could not close this process to the app: {}", e.0);
    }
    let program = vault_env_supervisor::lookup(&args.program, env.get("PATH"))?;
    let plan = resolve::plan(&env, &config).map_err(Error::Vars)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Helper threads (DNS lookups) must never take a signal meant for the app.
        .on_thread_start(block_signals)
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    // In daemon mode signal handling starts before anything else (on the runtime, which has no
    // thread of its own yet): a signal that arrives during start-up is delivered to the app.
    let mut supervisor = {
        let _entered = runtime.enter();
        (config.daemon == Some(true)).then(|| start_supervisor(&config)).transpose()?
    };
    runtime.block_on(async {
        let session = match plan.needs_vault() {
            true => Some(Session::open(&config, &plan).await?),
            false => {
                tracing::debug!("no vault: reference in the environment; Vault is not contacted");
                None
            }
        };
        let daemon = choose_mode(&config, session.as_ref());
        if !config.delay.is_zero() {
            tracing::info!("waiting {} before starting the app (VAULT_ENV_DELAY)", humantime::format_duration(config.delay));
            tokio::time::sleep(config.delay).await;
        }
        let app = App { program, argv0: args.program, args: args.args };
        if daemon {
            let supervisor = match supervisor.take() {
                Some(s) => s,
                None => start_supervisor(&config)?,
            };
            return Daemon::new(&config, &env, &plan, app, supervisor, session).await.run().await;
        }
        exec_mode(&config, &env, app, session).await
    })
}

fn block_signals() {
    if let Err(e) = vault_env_supervisor::signals::block() {
        tracing::warn!("cannot block signals: {e}");
    }
}

fn start_supervisor(config: &Config) -> Result<Supervisor, Error> {
    Supervisor::start(Options { process_group: config.daemon_settings.process_group })
        .map_err(|e| Error::Internal(format!("cannot set up signal handling: {e}")))
}

/// `VAULT_ENV_DAEMON` decides when set; otherwise daemon mode when something must be renewed.
fn choose_mode(config: &Config, session: Option<&Session>) -> bool {
    match config.daemon {
        Some(true) => tracing::info!("daemon mode (VAULT_ENV_DAEMON=true)"),
        Some(false) => tracing::info!("exec mode (VAULT_ENV_DAEMON=false)"),
        None => match session.and_then(|s| s.needs_daemon(config)) {
            Some(why) => {
                tracing::info!("daemon mode: {why}");
                return true;
            }
            None => tracing::debug!("exec mode: nothing needs renewing"),
        },
    }
    config.daemon == Some(true)
}

/// Replaces vault-env with the app. Returns only on failure.
async fn exec_mode(config: &Config, env: &Env, app: App, session: Option<Session>) -> Result<u8, Error> {
    let empty = Resolved::default();
    let resolved = session.as_ref().map_or(&empty, |s| &s.resolved);
    warn_unrenewed_leases(resolved);
    if let (Some(s), Some(true)) = (&session, config.revoke_token) {
        match s.client.revoke_self().await {
            Ok(()) => tracing::info!("token revoked (VAULT_REVOKE_TOKEN)"),
            Err(e) => tracing::warn!("could not revoke the token: {e}"),
        }
    }
    let token = session.as_ref().and_then(|s| s.app_token(config));
    let child_env = child_env::build(env, config, resolved, token);
    tracing::info!(program = %app.program.display(), "spawning process");
    Err(vault_env_supervisor::exec(&app.program, &app.argv0, &app.args, &child_env).into())
}

fn warn_unrenewed_leases(resolved: &Resolved) {
    if resolved.leases.is_empty() {
        return;
    }
    let list: Vec<String> = resolved.leases.iter().map(|l| format!("{} (ttl {}s)", l.path, l.duration)).collect();
    tracing::warn!(
        "exec mode cannot renew {} lease(s): {}; they end with their TTL or the token (unset VAULT_ENV_DAEMON to renew them)",
        resolved.leases.len(),
        list.join(", ")
    );
}

/// `vault-env --copy-to DIR`: installs this binary as DIR/vault-env (mode 0755), atomically, so an
/// init container can share it through a volume without a shell or `cp` in the image.
fn copy_to(dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |what: &str, e: std::io::Error| Error::Usage(format!("--copy-to {}: {what}: {e}", dir.display()));
    let me = std::env::current_exe().map_err(|e| fail("cannot find this binary", e))?;
    let tmp = dir.join(".vault-env.tmp");
    std::fs::copy(&me, &tmp).map_err(|e| fail("cannot copy", e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(|e| fail("cannot chmod", e))?;
    std::fs::rename(&tmp, dir.join("vault-env")).map_err(|e| fail("cannot rename", e))?;
    Ok(())
}
