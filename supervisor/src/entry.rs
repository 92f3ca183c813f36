//! vault-env's own start, in place of Rust's runtime start (`fn main`): the binary is
//! `#![no_main]` and its C `main` calls [`start`] first.
//!
//! What Rust's start does that vault-env keeps, done here the same way:
//! - standard input, output and error that are closed at start are opened on `/dev/null`, so no
//!   file vault-env opens (a signalfd, a socket to Vault) takes their number, and the app inherits
//!   the same three descriptors;
//! - SIGPIPE is ignored: a closed log pipe is an error on the write, never vault-env's death (the
//!   app gets the default back before its exec: [`mod@crate::exec`]);
//! - the arguments, from `argv` (the static build's standard library reads them only in its own
//!   start, so `std::env::args` is empty without it).
//!
//! What it leaves out, about 0.07 ms of each start with glibc (docs/benchmarks.md): reading the
//! main thread's stack bounds from `/proc/self/maps` and the `sigaltstack` + SIGSEGV/SIGBUS
//! handlers in each thread that turn a stack overflow into the message "has overflowed its stack"
//! before the abort. vault-env's stack depth does not depend on its input, and without those
//! handlers an overflow still ends the process with SIGSEGV.

use nix::libc::{self, c_char, c_int};
use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Makes the process what Rust's start would leave (see the module's text) and returns its
/// arguments, the program's name first.
///
/// # Safety
/// `argc` and `argv` must be what the C runtime passed to `main`: `argv` holds `argc` pointers
/// to NUL-terminated strings (or is null).
#[allow(unsafe_code)]
pub unsafe fn start(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    open_closed_standard_fds();
    // SAFETY: setting a disposition to SIG_IGN has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if argv.is_null() {
        return Vec::new();
    }
    (0..usize::try_from(argc).unwrap_or(0))
        // SAFETY: the caller passes main's argv, which holds argc valid C strings.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) })
        .map(|arg| OsStr::from_bytes(arg.to_bytes()).to_os_string())
        .collect()
}

/// Descriptors 0, 1 and 2 that are not open are opened on `/dev/null`, as Rust's start does;
/// like it, vault-env aborts when that fails (nothing sane can follow).
#[allow(unsafe_code)]
fn open_closed_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: poll reads and writes the three entries of the array it is given.
    let polled = loop {
        match unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } {
            -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            n => break n,
        }
    };
    for pfd in fds {
        let closed = match polled {
            // poll(2) can fail for lack of resources: ask each descriptor instead.
            // SAFETY: F_GETFD only reads the descriptor's flags.
            -1 => (unsafe { libc::fcntl(pfd.fd, libc::F_GETFD) }) == -1,
            _ => pfd.revents & libc::POLLNVAL != 0,
        };
        // SAFETY: a NUL-terminated path; open returns the lowest free descriptor, which is pfd.fd.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != pfd.fd {
            std::process::abort();
        }
    }
}
