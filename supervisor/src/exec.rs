//! Command lookup and `exec`, with shell exit-code conventions: 127 when the program is not
//! found, 126 when it is found but cannot be executed.
//!
//! The lookup happens before vault-env contacts Vault, so a typo in the command fails fast and
//! costs no login. The app is started with `execve(2)` on an [`Image`] built beforehand: its
//! environment in the order given, as Bank-Vaults' `syscall.Exec` passes it (`std`'s `Command`
//! sorts it by name), with SIGPIPE back at its default (Rust ignores it) and no blocked signal;
//! in daemon mode from a child that shares vault-env's memory until then ([`Image::spawn`]).

use nix::libc::{self, c_char, c_int, c_void};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The search path used when `PATH` is unset (as `execvp` does).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const EXIT_NOT_EXECUTABLE: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run {}: command not found{}", .program.display(), hint_for(.searched))]
    NotFound { program: PathBuf, searched: Option<OsString> },
    #[error("cannot run {}: {reason}", .program.display())]
    NotExecutable { program: PathBuf, reason: String },
}

fn hint_for(searched: &Option<OsString>) -> String {
    match searched {
        Some(path) => format!(" in PATH={}", path.to_string_lossy()),
        None => String::new(),
    }
}

impl ExecError {
    /// 127 for "not found", 126 for "found but not executable".
    pub fn exit_code(&self) -> u8 {
        match self {
            ExecError::NotFound { .. } => EXIT_NOT_FOUND,
            ExecError::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
        }
    }
}

/// `Err(None)`: nothing there; `Err(Some(why))`: there, but not an executable file.
fn is_executable_file(p: &Path) -> Result<(), Option<String>> {
    let meta = std::fs::metadata(p).map_err(|e| (e.kind() != std::io::ErrorKind::NotFound).then(|| e.to_string()))?;
    if meta.is_dir() {
        return Err(Some("is a directory".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Some("permission denied (not executable)".into()));
    }
    Ok(())
}

/// Finds `program` the way `execvp` does: as given when it holds a `/`, else in each `PATH` entry.
pub fn lookup(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, ExecError> {
    let as_path = PathBuf::from(program);
    if program.is_empty() {
        return Err(ExecError::NotFound { program: as_path, searched: None });
    }
    if program.as_bytes().contains(&b'/') {
        return match is_executable_file(&as_path) {
            Ok(()) => Ok(as_path),
            Err(None) => Err(ExecError::NotFound { program: as_path, searched: None }),
            Err(Some(reason)) => Err(ExecError::NotExecutable { program: as_path, reason }),
        };
    }
    let search = path_var.filter(|p| !p.is_empty()).unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut not_executable = None;
    for dir in search.as_bytes().split(|b| *b == b':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = dir.join(program);
        // One stat per directory: a missing candidate is not looked at again.
        match is_executable_file(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Some(reason)) if not_executable.is_none() => not_executable = Some((candidate, reason)),
            Err(_) => {}
        }
    }
    match not_executable {
        Some((program, reason)) => Err(ExecError::NotExecutable { program, reason }),
        None => Err(ExecError::NotFound { program: as_path, searched: Some(search.to_os_string()) }),
    }
}

/// A program, its arguments and its environment as `execve(2)` takes them, built beforehand so
/// that the process about to exec only makes the call: the environment in the order given.
pub struct Image {
    path: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// What `argv` and `envp` point into (a `CString`'s bytes stay put when it moves).
    _strings: Vec<CString>,
}

// SAFETY: the pointers point into the image's own strings, which nothing changes after `new`; the
// image is only read, also by the child that `spawn` starts.
#[allow(unsafe_code)]
unsafe impl Send for Image {}
#[allow(unsafe_code)]
unsafe impl Sync for Image {}

impl Image {
    /// `argv0` is the name the app sees. A NUL byte in any word is an error that names none of them.
    pub fn new(program: &Path, argv0: &OsStr, args: &[OsString], env: &[(OsString, OsString)]) -> Result<Image, ExecError> {
        let nul =
            || ExecError::NotExecutable { program: program.to_path_buf(), reason: "an argument or environment variable holds a NUL byte".into() };
        let path = CString::new(program.as_os_str().as_bytes()).map_err(|_| nul())?;
        let mut strings = Vec::with_capacity(1 + args.len() + env.len());
        for arg in std::iter::once(argv0).chain(args.iter().map(OsString::as_os_str)) {
            strings.push(CString::new(arg.as_bytes()).map_err(|_| nul())?);
        }
        for (name, value) in env {
            let mut pair = Vec::with_capacity(name.len() + 1 + value.len());
            pair.extend_from_slice(name.as_bytes());
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            strings.push(CString::new(pair).map_err(|_| nul())?);
        }
        let pointers = |s: &[CString]| s.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let (argv, envp) = strings.split_at(1 + args.len());
        Ok(Image { path, argv: pointers(argv), envp: pointers(envp), _strings: strings })
    }

    /// The app's steps before its exec, then `execve(2)`, in both modes: its own process group
    /// when `process_group`, SIGPIPE back at its default (Rust ignores it, and an ignored signal
    /// stays ignored across exec), `core_limit` (what vault-env started with:
    /// [`crate::harden::core_limit_for_app`]; execve restores dumpability) and no blocked signal.
    /// Returns only on failure, with the errno of the step that failed. Async-signal-safe, and it
    /// allocates nothing: it also runs in the child of [`Image::spawn`].
    #[allow(unsafe_code)]
    fn exec_as_app(&self, process_group: bool, core_limit: Option<(libc::rlim_t, libc::rlim_t)>) -> c_int {
        let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
        // SAFETY: each call takes plain values, or pointers to a local or into the image: a
        // NUL-terminated path and NULL-terminated arrays of NUL-terminated strings, owned by `self`.
        unsafe {
            if process_group && libc::setpgid(0, 0) != 0 {
                return errno();
            }
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let limit = core_limit.map(|(rlim_cur, rlim_max)| libc::rlimit { rlim_cur, rlim_max });
            if limit.is_some_and(|l| libc::setrlimit(libc::RLIMIT_CORE, &l) != 0) {
                return errno();
            }
            let mut none = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(none.as_mut_ptr());
            let e = libc::pthread_sigmask(libc::SIG_SETMASK, none.as_ptr(), std::ptr::null_mut());
            if e != 0 {
                return e;
            }
            libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
        }
        errno()
    }

    /// Starts the image in a new process (daemon mode) and returns its pid once it has exec'd.
    ///
    /// `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does: the child runs in vault-env's
    /// memory until its exec, and the calling thread waits for that exec. A fork would copy the
    /// page tables and then pay a copy-on-write fault for each page vault-env writes until the
    /// exec. Before its exec the child starts a process group of its own when `process_group`,
    /// sets SIGPIPE back to its default (Rust ignores it), takes the core-size limit vault-env
    /// started with ([`crate::harden::core_limit_for_app`]; `posix_spawn` cannot set that) and
    /// blocks no signal. An exec failure comes back as the child's errno through a close-on-exec
    /// pipe, which also holds where `CLONE_VFORK` is run as a fork (qemu-user, valgrind); the
    /// child is then reaped here.
    #[allow(unsafe_code)]
    pub fn spawn(&self, process_group: bool) -> std::io::Result<Pid> {
        let mut fds: [c_int; 2] = [0; 2];
        // SAFETY: pipe2 writes two new file descriptors into the array; they are owned below.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just made and nothing else owns them.
        let (mut errors, errors_in) = unsafe { (std::fs::File::from(OwnedFd::from_raw_fd(fds[0])), OwnedFd::from_raw_fd(fds[1])) };
        let start = Start { image: self, process_group, core_limit: crate::harden::core_limit_for_app(), errors: errors_in.as_raw_fd() };
        let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
        // The top of the child's stack (it grows down), 16-byte aligned.
        let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
        // No handler of vault-env's may run in the child: every signal stays blocked until the child
        // sets its own mask.
        let old_mask = SigSet::all().thread_swap_mask(SigmaskHow::SIG_SETMASK).map_err(std::io::Error::from)?;
        // SAFETY: the child runs `start_child` on its own stack (`stack`, alive until clone returns,
        // which with CLONE_VFORK is after the child's exec or exit) with a pointer to `start`, which
        // it only reads; see `start_child` for what it may do in shared memory.
        let pid = unsafe {
            libc::clone(start_child, top as *mut c_void, libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, (&raw const start).cast_mut().cast())
        };
        let clone_error = std::io::Error::last_os_error();
        let _ = old_mask.thread_set_mask();
        drop(errors_in);
        drop(stack);
        if pid < 0 {
            return Err(clone_error);
        }
        let pid = Pid::from_raw(pid);
        let mut errno = [0u8; 4];
        match errors.read_exact(&mut errno) {
            // The pipe closed with no word: the exec happened.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(pid),
            Err(e) => Err(e),
            Ok(()) => {
                while let Err(nix::errno::Errno::EINTR) = waitpid(pid, None) {}
                Err(std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
            }
        }
    }
}

/// The stack of a child started by [`Image::spawn`], until its exec: a few libc calls deep.
const CHILD_STACK: usize = 64 * 1024;

/// What a child started by [`Image::spawn`] reads before its exec.
struct Start<'a> {
    image: &'a Image,
    process_group: bool,
    core_limit: Option<(libc::rlim_t, libc::rlim_t)>,
    /// The write end of the close-on-exec pipe that takes an exec failure's errno.
    errors: c_int,
}

/// The child of [`Image::spawn`]: in vault-env's memory (or a copy of it) until its exec, with
/// every signal blocked. It reads `Start`, writes only its own stack (and errno, which is the
/// waiting thread's), calls only async-signal-safe functions and allocates nothing.
#[allow(unsafe_code)]
extern "C" fn start_child(start: *mut c_void) -> c_int {
    // SAFETY: `start` points to the `Start` that `spawn` keeps alive until the exec.
    let start = unsafe { &*start.cast::<Start>() };
    let error = start.image.exec_as_app(start.process_group, start.core_limit);
    let word = error.to_ne_bytes();
    // SAFETY: writes 4 bytes from the stack to the pipe, then ends the child.
    unsafe {
        libc::write(start.errors, word.as_ptr().cast(), word.len());
        libc::_exit(127)
    }
}

/// Replaces this process with `program`. `argv0` is what the app sees as its name. Returns only
/// on failure.
pub fn exec(program: &Path, argv0: &OsStr, args: &[OsString], env: &[(OsString, OsString)]) -> ExecError {
    let image = match Image::new(program, argv0, args, env) {
        Ok(image) => image,
        Err(e) => return e,
    };
    let errno = image.exec_as_app(false, crate::harden::core_limit_for_app());
    error_from_io(program, &std::io::Error::from_raw_os_error(errno))
}

/// An exec/spawn failure as 127 (ENOENT: the file or its `#!` interpreter is missing) or 126.
pub fn error_from_io(program: &Path, err: &std::io::Error) -> ExecError {
    let program = program.to_path_buf();
    match err.raw_os_error() {
        Some(nix::libc::ENOENT) => ExecError::NotFound { program, searched: None },
        _ => ExecError::NotExecutable { program, reason: err.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn script(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn lookup_searches_path_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        script(a.path(), "noexec", 0o644);
        let want = script(b.path(), "noexec", 0o755);
        let path = format!("{}:{}", a.path().display(), b.path().display());
        assert_eq!(lookup(OsStr::new("noexec"), Some(OsStr::new(&path))).unwrap(), want);
    }

    #[test]
    fn lookup_not_found_is_127_and_not_executable_is_126() {
        let d = tempfile::tempdir().unwrap();
        script(d.path(), "plain", 0o644);
        let path = d.path().as_os_str();
        let e = lookup(OsStr::new("nope"), Some(path)).unwrap_err();
        assert_eq!(e.exit_code(), 127);
        assert!(e.to_string().contains("command not found in PATH="), "{e}");
        assert_eq!(lookup(OsStr::new("plain"), Some(path)).unwrap_err().exit_code(), 126);
        assert_eq!(lookup(d.path().join("plain").as_os_str(), None).unwrap_err().exit_code(), 126);
        assert_eq!(lookup(d.path().as_os_str(), None).unwrap_err().exit_code(), 126);
        assert_eq!(lookup(d.path().join("missing").as_os_str(), None).unwrap_err().exit_code(), 127);
        assert_eq!(lookup(OsStr::new(""), None).unwrap_err().exit_code(), 127);
    }

    #[test]
    fn an_image_holds_its_words_in_order_and_refuses_a_nul_byte_without_naming_it() {
        let env = [("Z".into(), "1".into()), ("A".into(), "2".into())];
        let image = Image::new(Path::new("/bin/true"), OsStr::new("app"), &["x".into()], &env).unwrap();
        let words: Vec<&str> = image._strings.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(words, ["app", "x", "Z=1", "A=2"]);
        let at = |i: usize| image._strings[i].as_ptr();
        assert_eq!(image.argv, [at(0), at(1), std::ptr::null()]);
        assert_eq!(image.envp, [at(2), at(3), std::ptr::null()]);
        let secret: OsString = "s3cr\0t".into();
        for (args, env) in [(vec![secret.clone()], vec![]), (vec![], vec![("K".into(), secret.clone())])] {
            let e = Image::new(Path::new("/bin/true"), OsStr::new("app"), &args, &env).err().unwrap();
            assert_eq!(e.exit_code(), 126);
            assert!(!e.to_string().contains("s3cr"), "{e}");
        }
    }

    #[test]
    fn lookup_uses_default_path_when_unset() {
        assert_eq!(lookup(OsStr::new("sh"), None).unwrap().file_name().unwrap(), "sh");
    }
}
