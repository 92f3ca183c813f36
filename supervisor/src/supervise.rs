//! Daemon mode's process side: spawn the app, forward signals, reap every zombie, report exits.
//!
//! One task on vault-env's (current-thread) async runtime reads every signal (blocked, from a
//! non-blocking `signalfd` the runtime polls; see [`crate::signals`]) and is the only place that
//! calls `waitpid`: a second reaper (such as `tokio::process`) would steal exit statuses. It runs
//! whenever the rest of vault-env waits (for Vault, a timer, the app), so a signal is forwarded
//! while a renewal or a fetch is in flight. The app is started ([`exec::Image::spawn`]) and its pid
//! recorded in one step on that same thread, so its exit can't be reaped before its pid is known.
//! Signals that arrive while no app is running (before the first start, during a restart) are
//! kept and delivered to the next.
//!
//! A task, not a thread of its own as before: a thread's start (its stack, glibc's second malloc
//! arena, its exit) and the wake-up of the runtime by that thread cost about 0.05 ms of each start
//! (docs/benchmarks.md).
//!
//! When vault-env is not PID 1 it becomes a child subreaper, so orphaned grandchildren are
//! re-parented to it and reaped too.

use crate::exec::{self, ExecError};
use crate::signals;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Code(i32),
    Signaled(i32),
}

impl Status {
    /// Shell convention: the exit code, or 128+N when killed by signal N.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Code(c) => (c & 0xff) as u8,
            Status::Signaled(s) => (128 + s).clamp(0, 255) as u8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The app (the process vault-env started) ended.
    Exited { pid: u32, status: Status },
    /// A signal arrived for vault-env (and was forwarded or queued for the app).
    Signal(i32),
    /// Another descendant was reaped.
    Reaped { pid: u32, status: Status },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Run the app in its own process group and signal the whole group (tini `-g`), for
    /// `sh -c` style entrypoints whose children must get the signals too.
    pub process_group: bool,
}

struct Shared {
    app: Option<Pid>,
    pending: Vec<i32>,
    options: Options,
}

pub struct Supervisor {
    shared: Arc<Mutex<Shared>>,
    events: mpsc::UnboundedReceiver<Event>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Supervisor {
    /// Blocks the handled signals in the calling thread and starts the task that reads them, on
    /// the current tokio runtime (an error outside one). Call it before spawning, from the thread
    /// that blocked them first (other threads must block them too, or one of them could take a
    /// signal's default action).
    #[allow(unsafe_code)]
    pub fn start(options: Options) -> std::io::Result<Supervisor> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        if std::process::id() != 1 {
            // Orphans are re-parented to us instead of the host's init, so we can reap them.
            nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
        }
        signals::block()?;
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        let fd = SignalFd::with_flags(&signals::handled(), flags).map_err(std::io::Error::from)?;
        let fd = {
            let _entered = runtime.enter();
            // SAFETY: the SignalFd owns its descriptor and closes it only when dropped, which the
            // AsyncFd that owns it does last.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)?
        };
        let shared = Arc::new(Mutex::new(Shared { app: None, pending: Vec::new(), options }));
        let (tx, events) = mpsc::unbounded_channel();
        runtime.spawn(read_signals(fd, shared.clone(), tx));
        Ok(Supervisor { shared, events })
    }

    /// Starts the app. `argv0` is the name it sees; `env` is its whole environment.
    pub fn spawn(&self, program: &Path, argv0: &OsStr, args: &[OsString], env: &[(OsString, OsString)]) -> Result<u32, ExecError> {
        let image = exec::Image::new(program, argv0, args, env)?;
        let mut s = lock(&self.shared);
        let pid = image.spawn(s.options.process_group).map_err(|e| exec::error_from_io(program, &e))?;
        s.app = Some(pid);
        for sig in std::mem::take(&mut s.pending) {
            deliver(pid, sig, s.options);
        }
        Ok(pid.as_raw() as u32)
    }

    /// The next event; `None` only if the signals can no longer be read.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Sends `sig` to the running app (or its group). False when no app is running.
    pub fn signal_app(&self, sig: i32) -> bool {
        let s = lock(&self.shared);
        match s.app {
            Some(pid) => {
                deliver(pid, sig, s.options);
                true
            }
            None => false,
        }
    }

    /// SIGTERM to every remaining child process of vault-env, then reap them (waits up to `grace`).
    pub fn terminate_descendants(&self, grace: Duration) {
        let me = std::process::id();
        let children = children_of(me);
        for pid in &children {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        while !children_of(me).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in children_of(me) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// The signal task: every signal that arrives, until the signalfd fails (it does not).
async fn read_signals(fd: AsyncFd<SignalFd>, shared: Arc<Mutex<Shared>>, tx: mpsc::UnboundedSender<Event>) {
    loop {
        let Ok(mut ready) = fd.readable().await else { return };
        loop {
            let info = match fd.get_ref().read_signal() {
                Ok(Some(info)) => info,
                // None: nothing left to read (EAGAIN).
                Ok(None) => {
                    ready.clear_ready();
                    break;
                }
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            let sig = info.ssi_signo as i32;
            if sig == nix::libc::SIGCHLD {
                reap_all(&shared, &tx);
                continue;
            }
            {
                let mut s = lock(&shared);
                if signals::should_forward(sig, info.ssi_code, info.ssi_pid, s.options.process_group) {
                    match s.app {
                        Some(pid) => deliver(pid, sig, s.options),
                        None => s.pending.push(sig),
                    }
                }
            }
            let _ = tx.send(Event::Signal(sig));
        }
    }
}

fn deliver(pid: Pid, sig: i32, options: Options) {
    let target = if options.process_group { -pid.as_raw() } else { pid.as_raw() };
    send_raw(target, sig);
}

/// `kill(2)` by number: nix's typed `Signal` has no real-time signals.
#[allow(unsafe_code)]
fn send_raw(target: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    unsafe { nix::libc::kill(target, sig) };
}

/// Reaps every exited child (on the runtime's thread, as [`Supervisor::spawn`] runs: an app's exit
/// is never reaped before its pid is recorded).
fn reap_all(shared: &Mutex<Shared>, tx: &mpsc::UnboundedSender<Event>) {
    let mut s = lock(shared);
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Status::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Status::Signaled(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return,
        };
        let pid_u = pid.as_raw() as u32;
        if s.app == Some(pid) {
            s.app = None;
            let _ = tx.send(Event::Exited { pid: pid_u, status });
        } else {
            let _ = tx.send(Event::Reaped { pid: pid_u, status });
        }
    }
}

/// Pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
                // Fields after the parenthesised command name: state, ppid, …
                let rest = &stat[stat.rfind(')')? + 2..];
                let mut fields = rest.split_whitespace();
                let state = fields.next()?;
                let ppid: u32 = fields.next()?.parse().ok()?;
                Some(ppid == parent && state != "Z")
            }) == Some(true)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_exit_codes_follow_shell_conventions() {
        assert_eq!(Status::Code(0).exit_code(), 0);
        assert_eq!(Status::Code(7).exit_code(), 7);
        assert_eq!(Status::Code(255).exit_code(), 255);
        assert_eq!(Status::Signaled(15).exit_code(), 143);
        assert_eq!(Status::Signaled(9).exit_code(), 137);
    }
}
