//! Which signals vault-env forwards to the app, and which it keeps.
//!
//! Forwarded: every catchable signal, as tini does: HUP INT QUIT USR1 USR2 PIPE ALRM TERM CONT
//! TSTP URG XCPU XFSZ VTALRM PROF WINCH IO PWR STKFLT and the real-time signals.
//! Kept: CHLD (it drives reaping), the synchronous faults (ILL TRAP ABRT BUS FPE SEGV SYS) and
//! TTIN/TTOU (terminal job control). KILL and STOP cannot be caught.
//!
//! As tini does, the handled signals are *blocked* in every thread and read from a `signalfd` by
//! the supervisor's one thread. The kernel never drops a blocked signal, not even for PID 1 (which
//! otherwise ignores signals it has no handler for), and blocking costs two system calls, where
//! installing ~60 handlers through signal-hook's registry took about 3 million instructions (1 ms)
//! per start. `std::process::Command` clears the mask in the app it starts.

use nix::libc::{self, c_int};
use nix::sys::signal::{SigSet, Signal};

/// The signals vault-env sends itself, by name (the core has no `libc` of its own).
pub const SIGKILL: c_int = libc::SIGKILL;
pub const SIGTERM: c_int = libc::SIGTERM;

/// Signals vault-env must never block: synchronous faults and terminal job control.
const NOT_HANDLED: [Signal; 11] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGABRT,
    Signal::SIGSYS,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGKILL,
    Signal::SIGSTOP,
];

/// Every signal daemon mode handles: the forwarded ones and SIGCHLD.
pub fn handled() -> SigSet {
    let mut set = SigSet::all();
    for sig in NOT_HANDLED {
        set.remove(sig);
    }
    set
}

/// Blocks the handled signals in the calling thread (threads it starts afterwards inherit this).
pub fn block() -> std::io::Result<()> {
    handled().thread_block().map_err(std::io::Error::from)
}

/// `si_code` of a signal the kernel raised itself (a terminal's Ctrl-C, a broken pipe).
pub const SI_KERNEL: i32 = 0x80;

pub fn forwarded() -> Vec<c_int> {
    let mut v = vec![
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
        libc::SIGALRM,
        libc::SIGTERM,
        libc::SIGCONT,
        libc::SIGTSTP,
        libc::SIGURG,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGWINCH,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGSTKFLT,
    ];
    v.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    v
}

/// Whether a received signal goes to the app.
///
/// A signal the kernel raised for vault-env itself is not forwarded when the app shares its
/// process group: a terminal's Ctrl-C (INT), Ctrl-\ (QUIT), Ctrl-Z (TSTP), resize (WINCH) and
/// hang-up (HUP) already reached the whole foreground group, app included. Nor is one that
/// vault-env's own actions raised, which the kernel sends as from vault-env's own pid (SI_USER):
/// SIGPIPE for a log line written to a closed pipe, SIGXFSZ for a file over the size limit are
/// not the app's business. Signals sent by another process (`kill`, the container runtime, the
/// kubelet) are always forwarded.
pub fn should_forward(sig: c_int, si_code: i32, si_pid: u32, app_has_own_group: bool) -> bool {
    if si_code == libc::SI_USER && si_pid == std::process::id() {
        false
    } else if si_code == SI_KERNEL {
        app_has_own_group && sig != libc::SIGPIPE
    } else {
        true
    }
}

/// Signals that mean "stop": after one, vault-env stops restarting the app.
pub fn is_termination(sig: c_int) -> bool {
    matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT | libc::SIGHUP)
}

/// A signal's name for logs ("SIGTERM", "SIGRTMIN+3").
pub fn name(sig: c_int) -> String {
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
        return format!("SIGRTMIN+{}", sig - libc::SIGRTMIN());
    }
    nix::sys::signal::Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse(text: &str) -> Option<c_int> {
    let t = text.trim();
    if let Ok(n) = t.parse::<c_int>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse::<nix::sys::signal::Signal>().ok().map(|s| s as c_int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_excludes_chld_faults_and_job_control() {
        let f = forwarded();
        for kept in [
            libc::SIGCHLD,
            libc::SIGSEGV,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGBUS,
            libc::SIGABRT,
            libc::SIGSYS,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGKILL,
            libc::SIGSTOP,
        ] {
            assert!(!f.contains(&kept), "{} must not be forwarded", name(kept));
        }
        for sent in [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGINT, libc::SIGWINCH, libc::SIGRTMIN(), libc::SIGRTMAX()] {
            assert!(f.contains(&sent), "{} must be forwarded", name(sent));
        }
    }

    #[test]
    fn handled_set_matches_the_forwarded_list() {
        let set = handled();
        for sig in forwarded().into_iter().chain([libc::SIGCHLD]) {
            if let Ok(s) = Signal::try_from(sig) {
                assert!(set.contains(s), "{} is not handled", name(sig));
            }
        }
        for sig in NOT_HANDLED {
            assert!(!set.contains(sig), "{sig} must not be blocked");
        }
    }

    #[test]
    fn kernel_raised_signals_stay_with_the_foreground_group() {
        let (me, other) = (std::process::id(), 1);
        assert!(should_forward(libc::SIGTERM, libc::SI_USER, other, false), "kill(2) from a process");
        assert!(!should_forward(libc::SIGINT, SI_KERNEL, 0, false), "Ctrl-C reached the app already");
        assert!(should_forward(libc::SIGINT, SI_KERNEL, 0, true), "the app's own group is not in the foreground");
        assert!(!should_forward(libc::SIGPIPE, SI_KERNEL, 0, true), "vault-env's own broken pipe");
        assert!(!should_forward(libc::SIGPIPE, libc::SI_USER, me, true), "vault-env's own write to a closed pipe");
        assert!(should_forward(libc::SIGUSR1, libc::SI_QUEUE, me, true), "sigqueue(3) is not the kernel's");
    }

    #[test]
    fn parse_signal_names() {
        assert_eq!(parse("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse("term"), Some(libc::SIGTERM));
        assert_eq!(parse("QUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse("10"), Some(10));
        assert_eq!(parse("SIGNOPE"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(name(libc::SIGUSR1), "SIGUSR1");
    }
}
