//! Command lookup and `exec`, with shell exit-code conventions: 127 when the program is not
//! found, 126 when it is found but cannot be executed.
//!
//! The lookup happens before vault-env contacts Vault, so a typo in the command fails fast and
//! costs no login. The app is started with `execve(2)` on an [`Image`] built beforehand: its
//! environment in the order given, as Bank-Vaults' `syscall.Exec` passes it (`std`'s `Command`
//! sorts it by name), with SIGPIPE back at its default (Rust ignores it) and no blocked signal.

use nix::libc::c_char;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use std::ffi::{CString, OsStr, OsString};
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

/// A program, its arguments and its environment as `execve(2)` takes them, built before any fork
/// so that the child only makes the call: the environment in the order given.
pub struct Image {
    path: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// What `argv` and `envp` point into (a `CString`'s bytes stay put when it moves).
    _strings: Vec<CString>,
}

// SAFETY: the pointers point into the image's own strings, which nothing changes after `new`; the
// image is only read, also by the forked child's copy.
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

    /// `execve(2)`; returns only on failure. Allocates nothing, so it may run between fork and exec.
    #[allow(unsafe_code)]
    pub fn execve(&self) -> std::io::Error {
        // SAFETY: the path is a NUL-terminated string and argv and envp NULL-terminated arrays of
        // pointers to NUL-terminated strings, all owned by `self` and alive for the call.
        unsafe { nix::libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        std::io::Error::last_os_error()
    }
}

/// Replaces this process with `program`. `argv0` is what the app sees as its name. Returns only
/// on failure.
pub fn exec(program: &Path, argv0: &OsStr, args: &[OsString], env: &[(OsString, OsString)]) -> ExecError {
    let image = match Image::new(program, argv0, args, env) {
        Ok(image) => image,
        Err(e) => return e,
    };
    // The app gets the core-size limit vault-env started with (execve restores dumpability), the
    // default SIGPIPE and an empty signal mask.
    let _ = crate::harden::restore_for_app();
    default_sigpipe();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let err = image.execve();
    error_from_io(program, &err)
}

/// SIGPIPE back at its default: Rust ignores it, and an ignored signal stays ignored across exec.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: installs no handler, only the default action.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
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
