//! vault-env's own process, closed to the app: it holds a Vault token and secrets, and in daemon
//! mode the app runs beside it with the same uid. Non-dumpable, the kernel refuses that uid
//! `/proc/PID/{environ,mem,maps}` and `ptrace` (CAP_SYS_PTRACE still can), and writes no core
//! file; a core-size limit of 0 covers the time before. The app's `execve` makes it dumpable
//! again, and it gets the core-size limit vault-env started with ([`core_limit_for_app`]).

use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, rlim_t, setrlimit};
use std::sync::OnceLock;

/// The core-size limit (soft, hard) vault-env started with: what the app gets.
static ORIGINAL_CORE_LIMIT: OnceLock<(rlim_t, rlim_t)> = OnceLock::new();

/// What [`harden`] could not do (it goes on: the app still runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardenError(pub String);

/// Makes this process non-dumpable and its core-size limit 0. Call it first, before any secret.
pub fn harden() -> Result<(), HardenError> {
    let mut errors = Vec::new();
    if let Err(e) = prctl::set_dumpable(false) {
        errors.push(format!("PR_SET_DUMPABLE: {e}"));
    }
    match getrlimit(Resource::RLIMIT_CORE) {
        Ok((soft, hard)) => {
            let _ = ORIGINAL_CORE_LIMIT.set((soft, hard));
            if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, hard) {
                errors.push(format!("RLIMIT_CORE: {e}"));
            }
        }
        Err(e) => errors.push(format!("RLIMIT_CORE: {e}")),
    }
    if errors.is_empty() { Ok(()) } else { Err(HardenError(errors.join("; "))) }
}

/// The core-size limit (soft, hard) the app gets: vault-env's own before [`harden`] (none if it
/// did not run).
pub fn core_limit_for_app() -> Option<(rlim_t, rlim_t)> {
    ORIGINAL_CORE_LIMIT.get().copied()
}

/// Whether this process is dumpable (for tests and the log).
pub fn dumpable() -> bool {
    prctl::get_dumpable().unwrap_or(false)
}
