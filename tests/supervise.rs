//! Daemon mode's PID-1 duties, black-box: vault-env runs as a real PID 1 (`unshare --pid --fork`),
//! side by side with Debian's `tini` and `dumb-init` on the same cases (tini's own test suite:
//! exit codes 0–255, 128+N, forwarded signals, a child that traps TERM, zombie reaping, exec
//! failures).

use crate::common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pid1 {
    VaultEnv,
    Tini,
    DumbInit,
}

const ALL: [Pid1; 3] = [Pid1::VaultEnv, Pid1::Tini, Pid1::DumbInit];

impl Pid1 {
    fn argv(self) -> Vec<String> {
        match self {
            Pid1::VaultEnv => vec![vault_env_bin().to_string_lossy().into_owned()],
            Pid1::Tini => vec!["tini".into(), "--".into()],
            Pid1::DumbInit => vec!["dumb-init".into()],
        }
    }
}

/// `init app…` as PID 1 of a new PID namespace, with every signal's disposition reset to the
/// default first: started under `nohup` or as a background job, the test process inherits
/// SIGHUP, SIGINT and SIGQUIT ignored; an init rightly keeps them so for the app, and `sh`
/// cannot trap a signal ignored at entry, so the cases that forward them would hang.
fn pid1_command(init: Pid1, app: &[&str]) -> Command {
    let mut cmd = Command::new("env");
    cmd.args(["--default-signal", "unshare", "--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(init.argv())
        .args(app)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("VAULT_ENV_DAEMON", "true")
        .stdin(Stdio::null());
    cmd
}

fn run_pid1(init: Pid1, app: &[&str]) -> Output {
    run_with_timeout(pid1_command(init, app), Duration::from_secs(30))
}

/// A running `unshare`; dropped before it was waited for (a failed assertion), it is killed
/// and reaped, and `--kill-child` takes the namespace's PID 1 and its app down with it.
struct Unshare(Option<Child>);

impl Unshare {
    fn spawn(mut cmd: Command) -> Unshare {
        Unshare(Some(cmd.spawn().unwrap()))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the unshare child is present until waited for")
    }
}

impl Drop for Unshare {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The host pid of the namespace's PID 1 (the child of `unshare`).
fn pid1_host_pid(unshare: &mut Unshare) -> i32 {
    let path = format!("/proc/{0}/task/{0}/children", unshare.child().id());
    let mut pid = None;
    assert!(busy_wait(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(&path).ok().and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
        pid.is_some()
    }));
    pid.unwrap()
}

fn kill(pid: i32, sig: &str) {
    let status = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

fn wait_output(mut unshare: Unshare, timeout: Duration) -> Output {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if unshare.child().try_wait().unwrap().is_some() {
            let out = unshare.0.take().map(|child| child.wait_with_output().unwrap()).unwrap();
            return Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
            };
        }
        assert!(std::time::Instant::now() < deadline, "PID 1 did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(path: &Path) {
    assert!(busy_wait(Duration::from_secs(10), || path.exists()), "{} never appeared", path.display());
}

#[test]
fn exit_codes_pass_through_like_tini_and_dumb_init() {
    for init in ALL {
        let codes: Vec<u32> = if init == Pid1::VaultEnv { (0..=255).collect() } else { vec![0, 1, 2, 7, 126, 127, 128, 200, 255] };
        for code in codes {
            let out = run_pid1(init, &["sh", "-c", &format!("exit {code}")]);
            assert_eq!(out.code, Some(code as i32), "{init:?} exit {code}: {}", out.stderr);
        }
    }
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_n() {
    for init in ALL {
        for (sig, want) in [("KILL", 137), ("USR1", 138), ("TERM", 143), ("SEGV", 139)] {
            let out = run_pid1(init, &["sh", "-c", &format!("kill -{sig} $$")]);
            assert_eq!(out.code, Some(want), "{init:?} kill -{sig}: {}", out.stderr);
        }
    }
}

#[test]
fn signals_are_forwarded_to_the_app() {
    for init in ALL {
        for sig in ["TERM", "HUP", "USR1", "USR2", "INT"] {
            let dir = tempfile::tempdir().unwrap();
            let ready = dir.path().join("ready");
            let script = format!("trap 'echo got {sig}; exit 7' {sig}; touch {}; while :; do sleep 0.05; done", ready.display());
            let mut cmd = pid1_command(init, &["sh", "-c", &script]);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = Unshare::spawn(cmd);
            let pid1 = pid1_host_pid(&mut child);
            wait_for_file(&ready);
            kill(pid1, sig);
            let out = wait_output(child, Duration::from_secs(10));
            assert_eq!((out.code, out.stdout.trim()), (Some(7), format!("got {sig}").as_str()), "{init:?} {sig}: {}", out.stderr);
        }
    }
}

#[test]
fn a_burst_of_different_signals_all_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let log = dir.path().join("log");
    let script = format!(
        "for s in USR1 USR2 HUP WINCH; do trap \"echo $s >> {log}\" $s; done; trap 'exit 0' TERM; touch {ready}; while :; do sleep 0.05; done",
        log = log.display(),
        ready = ready.display()
    );
    let mut cmd = pid1_command(Pid1::VaultEnv, &["sh", "-c", &script]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = Unshare::spawn(cmd);
    let pid1 = pid1_host_pid(&mut child);
    wait_for_file(&ready);
    for sig in ["USR1", "USR2", "HUP", "WINCH"] {
        kill(pid1, sig);
    }
    let arrived = || std::fs::read_to_string(&log).unwrap_or_default().lines().map(String::from).collect::<Vec<String>>();
    assert!(
        busy_wait(Duration::from_secs(5), || arrived().len() == 4),
        "vault-env as PID 1: of USR1, USR2, HUP and WINCH the app got {:?}",
        arrived()
    );
    kill(pid1, "TERM");
    assert_eq!(wait_output(child, Duration::from_secs(10)).code, Some(0), "vault-env as PID 1: the app's exit after TERM");
    let mut got = arrived();
    got.sort();
    assert_eq!(got, ["HUP", "USR1", "USR2", "WINCH"], "vault-env as PID 1: each signal once");
}

#[test]
fn orphaned_zombies_are_reaped_as_pid_1() {
    // A grandchild is orphaned (its parent exits), then exits itself: PID 1 must reap it.
    let script = "(sleep 0.2 &); sleep 1; \
                  z=0; for f in /proc/[0-9]*/stat; do s=$(cut -d' ' -f3 \"$f\" 2>/dev/null); [ \"$s\" = Z ] && z=$((z+1)); done; echo zombies=$z";
    for init in ALL {
        let out = run_pid1(init, &["sh", "-c", script]);
        assert_eq!((out.code, out.stdout.trim()), (Some(0), "zombies=0"), "{init:?}: {}", out.stderr);
    }
}

#[test]
fn orphans_are_reaped_as_a_subreaper_when_not_pid_1() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("orphan");
    let script = format!(
        "(sleep 0.3 & echo $! > {p}); sleep 1.2; o=$(cat {p}); \
         if [ -e /proc/$o ]; then echo \"state=$(cut -d' ' -f3 /proc/$o/stat) ppid=$(cut -d' ' -f4 /proc/$o/stat)\"; else echo reaped; fi",
        p = pidfile.display()
    );
    let out = vault_env(&[("VAULT_ENV_DAEMON", "true")], &["sh", "-c", &script]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "reaped"), "{}", out.stderr);
}

#[test]
fn exec_failures_are_127_and_126_in_daemon_mode() {
    let out = run_pid1(Pid1::VaultEnv, &["no-such-command-xyz"]);
    assert_eq!(out.code, Some(127), "{}", out.stderr);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plain.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let out = run_pid1(Pid1::VaultEnv, &[script.to_str().unwrap()]);
    assert_eq!(out.code, Some(126), "{}", out.stderr);
    // Found and executable, so the exec itself fails in the started child, whose errno comes back
    // to vault-env: a missing interpreter (ENOENT) and a file that is no program (ENOEXEC).
    use std::os::unix::fs::PermissionsExt;
    for (content, code, says) in [("#!/nonexistent/interpreter\n", 127, "command not found"), ("just text\n", 126, "Exec format error")] {
        let program = dir.path().join(format!("app-{code}"));
        std::fs::write(&program, content).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = run_pid1(Pid1::VaultEnv, &[program.to_str().unwrap()]);
        assert_eq!(out.code, Some(code), "{content:?}: {}", out.stderr);
        assert!(out.stderr.contains(says) && out.stderr.contains(program.to_str().unwrap()), "{content:?}: {}", out.stderr);
    }
}

#[test]
fn a_signal_before_the_app_starts_is_delivered_when_it_does() {
    // VAULT_ENV_DELAY holds the start for 2 s; a USR1 sent meanwhile must reach the app.
    let mut cmd = pid1_command(Pid1::VaultEnv, &["sleep", "20"]);
    cmd.env("VAULT_ENV_DELAY", "2s").stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = Unshare::spawn(cmd);
    let pid1 = pid1_host_pid(&mut child);
    std::thread::sleep(Duration::from_millis(500));
    kill(pid1, "USR1");
    let out = wait_output(child, Duration::from_secs(15));
    assert_eq!(out.code, Some(138), "the app was killed by the early SIGUSR1: {}", out.stderr);
}

#[test]
fn the_app_gets_a_scrubbed_environment_in_daemon_mode() {
    let out = vault_env(&[("VAULT_ENV_DAEMON", "true"), ("VAULT_ADDR", "http://x"), ("VAULT_TOKEN", "s.t"), ("KEEP", "1")], &["env"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("KEEP=1"), "{}", out.stdout);
    assert!(!out.stdout.contains("VAULT_"), "daemon mode leaked settings: {}", out.stdout);
}

/// As in exec mode (`exec::the_apps_environment_keeps_its_order`): std's `Command` would sort it.
#[test]
fn the_apps_environment_keeps_its_order_in_daemon_mode() {
    app_env_keeps_its_order("VAULT_ENV_DAEMON=true");
}

#[test]
fn the_app_starts_with_no_blocked_signal_and_the_same_dispositions_as_in_exec_mode() {
    // vault-env blocks every signal it handles; the app must not inherit that mask, and must see
    // the same ignored set as when vault-env execs it (what vault-env's own caller passed down).
    let status = |daemon: &str| {
        let out = vault_env(&[("VAULT_ENV_DAEMON", daemon)], &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        out.stdout
    };
    // Signals 32 and 33 are glibc's internal ones (NPTL cancel/setxid): their state depends on
    // whether glibc installed its own handler yet, and every glibc program installs it anyway.
    let standard = |text: &str, field: &str| {
        let line = text.lines().find(|l| l.starts_with(field)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap() & 0x7fff_ffff
    };
    let (daemon, exec) = (status("true"), status("false"));
    assert_eq!(standard(&daemon, "SigBlk"), 0, "{daemon}");
    assert_eq!(standard(&daemon, "SigIgn"), standard(&exec, "SigIgn"), "daemon:\n{daemon}exec:\n{exec}");
}

#[test]
fn mode_is_chosen_automatically() {
    // KV secrets have no lease: exec mode, the app replaces vault-env (its parent is the test).
    let bao = Bao::dev();
    bao.kv2("app", serde_json::json!({"k": "v"}));
    let parent = ["sh", "-c", "cat /proc/$PPID/comm"];
    let env = [("VAULT_ADDR", bao.addr.as_str()), ("VAULT_TOKEN", ROOT_TOKEN), ("K", "vault:secret/data/app#k")];
    let out = vault_env(&env, &parent);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stdout.contains("vault-env"), "exec mode expected, the app's parent is {}", out.stdout);
    // VAULT_ENV_DAEMON=true: vault-env stays as the parent.
    let out = vault_env(&[&env[..], &[("VAULT_ENV_DAEMON", "true")]].concat(), &parent);
    assert_eq!(out.stdout.trim(), "vault-env", "{}", out.stderr);
}

#[test]
fn leftover_descendants_get_sigterm_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    let app = format!("sleep 30 >/dev/null 2>&1 & echo $! > {}", pidfile.display());
    let alive = |pid: &str| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };

    let out = vault_env(&[("VAULT_ENV_DAEMON", "true"), ("VAULT_ENV_TERMINATE_DESCENDANTS", "true")], &["sh", "-c", &app]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    assert!(busy_wait(Duration::from_secs(5), || !alive(&pid)), "the background sleep survived");

    let out = vault_env(&[("VAULT_ENV_DAEMON", "true")], &["sh", "-c", &app]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    assert!(alive(&pid), "without the option the background process is left alone");
    let _ = Command::new("kill").arg(&pid).status();
}

/// Daemon mode outside PID 1 (exec mode: `exec::`): closed standard descriptors are opened on
/// /dev/null before the signalfd and the runtime's descriptors are made.
#[test]
fn closed_standard_descriptors_are_opened_on_dev_null_in_daemon_mode() {
    assert_eq!(standard_fds_of_an_app_started_with_them_closed("true"), "/dev/null\n/dev/null\n/dev/null\n");
}

/// Daemon mode (exec mode: `exec::`): a log line to a closed pipe neither ends vault-env nor
/// sends the app the SIGPIPE that vault-env's own write raised.
#[test]
fn a_closed_log_pipe_does_not_stop_daemon_mode() {
    assert_eq!(exit_with_a_closed_log_pipe("true"), (Some(7), None));
}
