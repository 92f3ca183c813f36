//! Exec mode: command lookup before Vault, 126/127, argv and exit code pass-through, SIGPIPE reset,
//! and no Vault contact at all when nothing refers to Vault.

use crate::common::*;
use serde_json::json;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A TCP listener that counts connections: stands in for "a Vault that must not be contacted".
fn connection_counter() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            c.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}

#[test]
fn no_reference_means_no_vault_contact() {
    let (addr, count) = connection_counter();
    let out = vault_env(
        &[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "s.token"), ("VAULT_ROLE", "x"), ("APP_MODE", "prod")],
        &["sh", "-c", "printf '%s|%s' \"$APP_MODE\" \"${VAULT_TOKEN-<unset>}\""],
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "prod|<unset>"), "{}", out.stderr);
    assert_eq!(count.load(Ordering::SeqCst), 0, "Vault was contacted");
}

#[test]
fn command_lookup_happens_before_any_vault_call() {
    let (addr, count) = connection_counter();
    let out = vault_env(&[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "t"), ("P", "vault:secret/data/x#k")], &["no-such-command-xyz", "--flag"]);
    assert_eq!(out.code, Some(127), "{}", out.stderr);
    assert!(out.stderr.contains("cannot run no-such-command-xyz: command not found in PATH="), "{}", out.stderr);
    assert_eq!(count.load(Ordering::SeqCst), 0, "Vault was contacted before the command was found");

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let out = vault_env(&[], &[script.to_str().unwrap()]);
    assert_eq!(out.code, Some(126), "{}", out.stderr);
    assert!(out.stderr.contains("not executable"), "{}", out.stderr);
    let out = vault_env(&[], &[dir.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(126), "a directory: {}", out.stderr);
}

#[test]
fn missing_interpreter_is_127() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad-shebang");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = vault_env(&[], &[script.to_str().unwrap()]);
    assert_eq!(out.code, Some(127), "{}", out.stderr);
}

#[test]
fn argv_and_exit_code_pass_through() {
    let out = vault_env(&[], &["sh", "-c", "printf '%s,' \"$0\" \"$@\"; exit 7", "zero", "--help", "-x", "two words"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(7), "zero,--help,-x,two words,"), "{}", out.stderr);
    let out = vault_env(&[], &["--", "sh", "-c", "exit 0"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn exec_replaces_vault_env_and_resets_sigpipe() {
    // Rust ignores SIGPIPE in its own process; the app must get the default disposition back.
    let out = vault_env(&[], &["grep", "^SigIgn", "/proc/self/status"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let sigign = out.stdout.lines().find(|l| l.starts_with("SigIgn")).unwrap();
    let mask = u64::from_str_radix(sigign.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(mask & (1 << (13 - 1)), 0, "SIGPIPE is ignored in the app: {sigign}");
}

/// vault-env starts without Rust's runtime start (`#![no_main]`) and keeps what of it matters:
/// standard descriptors that are closed at start are opened on /dev/null, so the descriptors
/// vault-env opens (its runtime's) never take their numbers and the app gets the same three.
/// Daemon mode: `supervise::`.
#[test]
fn closed_standard_descriptors_are_opened_on_dev_null() {
    assert_eq!(standard_fds_of_an_app_started_with_them_closed("false"), "/dev/null\n/dev/null\n/dev/null\n");
}

/// A log line to a closed pipe is a failed write, not vault-env's death (by SIGPIPE, or by an
/// abort where the log's writer panicked): the app still runs (it gets SIGPIPE's default back:
/// `exec_replaces_vault_env_and_resets_sigpipe`). `--help` into a closed pipe exits 1. Daemon
/// mode: `supervise::`.
#[test]
fn a_closed_pipe_does_not_stop_vault_env() {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(exit_with_a_closed_log_pipe("false"), (Some(7), None));
    let status =
        std::process::Command::new(vault_env_bin()).arg("--help").stdout(closed_pipe()).stderr(std::process::Stdio::null()).status().unwrap();
    assert_eq!((status.code(), status.signal()), (Some(1), None), "--help");
}

/// The app's environment is vault-env's own in its order, as Bank-Vaults' `syscall.Exec` passes
/// it (Rust's `Command` would pass it sorted by name). Daemon mode: `supervise::`.
#[test]
fn the_apps_environment_keeps_its_order() {
    app_env_keeps_its_order("VAULT_ENV_DAEMON=false");
}

#[test]
fn help_and_version() {
    let out = vault_env(&[], &["--help"]);
    assert_eq!(out.code, Some(0));
    for needle in ["VAULT_ADDR", "VAULT_TRANSIT_BATCH_SIZE", "Exit codes", "127"] {
        assert!(out.stdout.contains(needle), "--help lacks {needle}");
    }
    let out = vault_env(&[], &["--version"]);
    assert!(out.stdout.starts_with("vault-env "), "{}", out.stdout);
    let out = vault_env(&[], &[]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
}

#[test]
fn delay_waits_before_the_app_starts() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"k": "v"}));
    let start = std::time::Instant::now();
    let out = vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN), ("P", "vault:secret/data/app#k"), ("VAULT_ENV_DELAY", "1s")],
        &args(&print_var("P")),
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "v"), "{}", out.stderr);
    assert!(start.elapsed() >= std::time::Duration::from_secs(1));
}

/// The webhook's `copy-vault-env` init container runs `vault-env --copy-to /vault/`: no shell needed.
#[test]
fn copy_to_installs_a_working_binary() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = vault_env(&[], &["--copy-to", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.all());
    let copy = dir.path().join("vault-env");
    assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(vault_env_bin()).unwrap());
    let out = run_with_timeout(
        {
            let mut c = std::process::Command::new(&copy);
            c.args(["sh", "-c", "echo copied"]).env_clear().env("PATH", "/usr/bin:/bin");
            c
        },
        std::time::Duration::from_secs(10),
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "copied\n"), "{}", out.stderr);
    let out = vault_env(&[], &["--copy-to", "/nonexistent/dir"]);
    assert_eq!(out.code, Some(64), "{}", out.all());
    assert!(out.stderr.contains("--copy-to /nonexistent/dir"), "{}", out.stderr);
}
