//! Command lookup and `exec`, with shell exit-code conventions: 127 when the program is not
//! found, 126 when it is found but cannot be executed.
//!
//! The lookup happens before vault-env contacts Vault, so a typo in the command fails fast and
//! costs no login. `exec` goes through `std`'s `CommandExt::exec`, which resets SIGPIPE to its
//! default and clears the signal mask (nix's `execvp` would leave SIGPIPE ignored in the app).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Replaces this process with `program`. `argv0` is what the app sees as its name. Returns only
/// on failure.
pub fn exec(program: &Path, argv0: &OsStr, args: &[OsString], env: &[(OsString, OsString)]) -> ExecError {
    // The app gets the core-size limit vault-env started with (execve restores dumpability).
    let _ = crate::harden::restore_for_app();
    let err = Command::new(program).arg0(argv0).args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).exec();
    error_from_io(program, &err)
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
    fn lookup_uses_default_path_when_unset() {
        assert_eq!(lookup(OsStr::new("sh"), None).unwrap().file_name().unwrap(), "sh");
    }
}
