//! vault-env's own process, closed to the app (security review H3): it holds a Vault token and
//! secrets, and in daemon mode the app runs beside it with the same uid. Non-dumpable, the kernel
//! refuses that uid `/proc/PID/{environ,mem,maps}` and `ptrace` (CAP_SYS_PTRACE still can), and
//! writes no core file; a core-size limit of 0 covers the time before. The app's `execve` makes
//! it dumpable again, and [`restore_for_app`] gives it the core-size limit vault-env started with.

use nix::libc;
use std::sync::OnceLock;

/// The core-size limit vault-env started with: what the app gets.
static ORIGINAL_CORE_LIMIT: OnceLock<libc::rlimit> = OnceLock::new();

/// What [`harden`] could not do (it goes on: the app still runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardenError(pub String);

/// Makes this process non-dumpable and its core-size limit 0. Call it first, before any secret.
#[allow(unsafe_code)]
pub fn harden() -> Result<(), HardenError> {
    let mut errors = Vec::new();
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes integers only and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        errors.push(format!("PR_SET_DUMPABLE: {}", std::io::Error::last_os_error()));
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own; setrlimit reads one.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 {
            let _ = ORIGINAL_CORE_LIMIT.set(limit);
            let none = libc::rlimit { rlim_cur: 0, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
                errors.push(format!("RLIMIT_CORE: {}", std::io::Error::last_os_error()));
            }
        } else {
            errors.push(format!("RLIMIT_CORE: {}", std::io::Error::last_os_error()));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(HardenError(errors.join("; "))) }
}

/// Gives the calling process back the core-size limit vault-env started with. Async-signal-safe
/// (one `setrlimit` on a value read before the fork), so it may run between fork and exec.
#[allow(unsafe_code)]
pub fn restore_for_app() -> std::io::Result<()> {
    if let Some(limit) = ORIGINAL_CORE_LIMIT.get() {
        // SAFETY: setrlimit reads the struct; no allocation, no lock.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether this process is dumpable (for tests and the log).
#[allow(unsafe_code)]
pub fn dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes integers only.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}
