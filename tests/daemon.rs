//! Daemon mode against real servers: leases renewed and rotated before they expire (MariaDB
//! dynamic credentials through OpenBao's database engine, with zero failed logins), the lease-end
//! policies, a Vault outage that must not restart a healthy app, and re-login when the token is capped.

use crate::common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts vault-env in the background with exactly `env` (plus PATH/HOME); with its HOME, the
/// guard that stops it (and so its app) if this test process dies.
fn spawn_vault_env(env: &[(&str, &str)], app: &[&str]) -> (Child, (tempfile::TempDir, Lifeline)) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(vault_env_bin());
    cmd.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("HOME", home.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.args(app).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let lifeline = Lifeline::watch(child.id());
    (child, (home, lifeline))
}

fn stop(child: Child) -> Output {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    finish(child, Duration::from_secs(20))
}

fn finish(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "vault-env did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Output { code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
}

#[test]
fn dynamic_mysql_credentials_rotate_with_zero_failed_logins() {
    let bao = Bao::dev();
    let db = MariaDb::start();
    database_engine(&bao, &db, "4s", "12s");
    let port = db.port.to_string();
    // The app logs in with its credentials twice a second, as a new connection each time.
    let app = format!(
        "trap 'exit 0' TERM; while :; do \
           if mariadb --no-defaults -h127.0.0.1 -P{port} -u\"$DB_USER\" -p\"$DB_PASSWORD\" -N -e 'SELECT 1' >/dev/null 2>&1; \
           then echo \"OK $DB_USER\"; else echo \"FAIL $DB_USER\"; fi; sleep 0.5; done"
    );
    let (child, _kept) = spawn_vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("DB_USER", "vault:database/creds/app#username"),
            ("DB_PASSWORD", "vault:database/creds/app#password"),
            ("VAULT_ENV_STOP_TIMEOUT", "3s"),
        ],
        &["sh", "-c", &app],
    );
    std::thread::sleep(Duration::from_secs(27));
    let out = stop(child);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let fails: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.is_empty(), "failed logins: {fails:?}\n{}", out.stderr);
    let users: BTreeSet<&str> = out.stdout.lines().filter_map(|l| l.strip_prefix("OK ")).collect();
    assert!(users.len() >= 2, "expected rotation to new users, saw {users:?}\n{}", out.stderr);
    for needle in ["daemon mode: 1 secret(s) have leases", "lease renewed", "restarting the app with new secrets", "lease revoked"] {
        assert!(out.stderr.contains(needle), "log lacks {needle:?}:\n{}", out.stderr);
    }
    // Revoked on exit: no lease left, and the last user can no longer log in.
    let (_, leases) = bao.try_api("LIST", "sys/leases/lookup/database/creds/app", None);
    assert!(leases["data"]["keys"].as_array().is_none_or(Vec::is_empty), "leases left: {leases}");
    let last = out.stdout.lines().filter_map(|l| l.strip_prefix("OK ")).next_back().unwrap();
    assert!(db.login(last, "whatever").is_err());
    // Lease ids are logged shortened ("database/creds/app/AbCd…"), never in full.
    let mentions: Vec<&str> = out.stderr.split("database/creds/app/").skip(1).collect();
    assert!(!mentions.is_empty(), "{}", out.stderr);
    for rest in mentions {
        assert!(rest.chars().take(5).any(|c| c == '…'), "a full lease id was logged: database/creds/app/{}", &rest[..rest.len().min(30)]);
    }
}

/// PKI certificates with a lease: not renewable, so they are replaced before they expire.
fn pki_with_leases(bao: &Bao) {
    bao.mount("pki", "pki", json!({}));
    bao.api("POST", "sys/mounts/pki/tune", Some(json!({"max_lease_ttl": "87600h"})));
    bao.api("POST", "pki/root/generate/internal", Some(json!({"common_name": "test-ca", "ttl": "8760h"})));
    bao.api(
        "POST",
        "pki/roles/svc",
        Some(json!({"allowed_domains": ["svc.local"], "allow_subdomains": true, "max_ttl": "72h", "generate_lease": true})),
    );
}

const SHORT_CERT: &str = r#">>vault:pki/issue/svc#serial_number#{"common_name":"a.svc.local","ttl":"3s"}"#;

#[test]
fn non_renewable_leases_are_replaced_by_restarting_the_app() {
    let bao = Bao::dev();
    pki_with_leases(&bao);
    let (child, _kept) = spawn_vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN), ("SERIAL", SHORT_CERT)],
        &["sh", "-c", "trap 'exit 0' TERM; echo \"serial $SERIAL\"; while :; do sleep 0.1; done"],
    );
    std::thread::sleep(Duration::from_secs(8));
    let out = stop(child);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let serials: BTreeSet<&str> = out.stdout.lines().filter_map(|l| l.strip_prefix("serial ")).collect();
    assert!(serials.len() >= 3, "expected a new certificate every ~2 s, got {serials:?}\n{}", out.stderr);
}

#[test]
fn on_lease_end_exit_stops_the_app_at_expiry_with_75() {
    let bao = Bao::dev();
    pki_with_leases(&bao);
    let start = Instant::now();
    // OpenBao reports a 5 s certificate as a ~4 s lease; a replacement would start 1 s before its end.
    let cert = SHORT_CERT.replace("\"3s\"", "\"5s\"");
    let (child, _kept) = spawn_vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN), ("SERIAL", &cert), ("VAULT_ENV_ON_LEASE_END", "exit")],
        &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"],
    );
    let out = finish(child, Duration::from_secs(20));
    let took = start.elapsed();
    assert_eq!(out.code, Some(75), "{}", out.stderr);
    assert!(took >= Duration::from_millis(3500), "stopped before the lease expired: {took:?}");
    assert!(out.stderr.contains("expired; stopping the app"), "{}", out.stderr);
}

/// A renewable token (given in VAULT_TOKEN) that can read secret/data/app.
fn short_token(bao: &Bao, ttl: &str) -> String {
    bao.kv2("app", json!({"k": "v"}));
    bao.policy("read-app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    let resp = bao.api("POST", "auth/token/create", Some(json!({"policies": ["read-app"], "ttl": ttl, "renewable": true})));
    resp["auth"]["client_token"].as_str().unwrap().to_string()
}

#[test]
fn vault_briefly_unreachable_does_not_restart_a_healthy_app() {
    let bao = Bao::dev();
    let token = short_token(&bao, "12s");
    let gate = Gate::to(&bao.addr);
    let (child, _kept) = spawn_vault_env(
        &[("VAULT_ADDR", &gate.addr), ("VAULT_TOKEN", &token), ("K", "vault:secret/data/app#k"), ("VAULT_ENV_DAEMON", "true")],
        &["sh", "-c", "trap 'exit 0' TERM; echo \"started $$\"; while :; do sleep 0.1; done"],
    );
    std::thread::sleep(Duration::from_secs(7));
    gate.set_open(false); // the renewal at 8.4–9 s fails
    std::thread::sleep(Duration::from_secs(3));
    gate.set_open(true); // a retry before the 12 s expiry succeeds
    std::thread::sleep(Duration::from_secs(5));
    let out = stop(child);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.lines().filter(|l| l.starts_with("started")).count(), 1, "the app was restarted:\n{}", out.stderr);
    let failed = out.stderr.find("token renewal failed").unwrap_or_else(|| panic!("no failed renewal:\n{}", out.stderr));
    let renewed = out.stderr.rfind("token renewed").unwrap_or_else(|| panic!("no renewal:\n{}", out.stderr));
    assert!(renewed > failed, "renewal resumed after the outage:\n{}", out.stderr);
}

#[test]
fn vault_down_until_the_token_expires_exits_75() {
    let bao = Bao::dev();
    let start = Instant::now();
    let token = short_token(&bao, "5s");
    let gate = Gate::to(&bao.addr);
    let (child, _kept) = spawn_vault_env(
        &[("VAULT_ADDR", &gate.addr), ("VAULT_TOKEN", &token), ("K", "vault:secret/data/app#k"), ("VAULT_ENV_DAEMON", "true")],
        &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"],
    );
    std::thread::sleep(Duration::from_secs(1));
    gate.set_open(false);
    let out = finish(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(75), "{}", out.stderr);
    // Vault reports whole seconds left, so vault-env may count the end up to 1 s early; it must
    // still keep trying long after the outage began (1 s) instead of giving up.
    assert!(start.elapsed() >= Duration::from_millis(3500), "gave up long before the token expired: {:?}", start.elapsed());
    assert!(out.stderr.contains("the Vault token expired"), "{}", out.stderr);
}

#[test]
fn a_capped_login_token_is_replaced_by_logging_in_again() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"k": "v"}));
    bao.policy("read-app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    let (role_id, secret_id) = bao.approle(&["read-app"], "4s", "8s");
    let (child, _kept) = spawn_vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_TOKEN", "vault:login"),
            ("VAULT_AUTH_METHOD", "approle"),
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID", &secret_id),
            ("K", "vault:secret/data/app#k"),
        ],
        // The app shows which token it has (a prefix, this is a test) and that it still works.
        &["sh", "-c", "trap 'exit 0' TERM; echo \"token ${VAULT_TOKEN%${VAULT_TOKEN#??????????}}\"; while :; do sleep 0.1; done"],
    );
    std::thread::sleep(Duration::from_secs(13));
    let out = stop(child);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let tokens: BTreeSet<&str> = out.stdout.lines().filter_map(|l| l.strip_prefix("token ")).collect();
    assert!(tokens.len() >= 2, "expected a new token after the 8 s max TTL, got {tokens:?}\n{}", out.stderr);
    assert!(out.stderr.contains("obtained a new Vault token"), "{}", out.stderr);
}

/// A token revoked from outside was never replaced; vault-env retried the
/// 403 until the lease ran out, stopped the app and exited 75, although a login would have
/// worked. Now the refused token is checked, a new login made, new secrets fetched and the app
/// restarted. At exit, revoking the (login) token revokes its leases: no per-lease calls.
#[test]
fn a_token_revoked_from_outside_is_replaced_by_a_new_login() {
    let bao = Bao::dev();
    let db = MariaDb::start();
    database_engine(&bao, &db, "6s", "10m");
    bao.policy("db", r#"path "database/creds/app" { capabilities = ["read"] }"#);
    let (role_id, secret_id) = bao.approle(&["db"], "1m", "10m");
    let (child, _kept) = spawn_vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_AUTH_METHOD", "approle"),
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID", &secret_id),
            ("VAULT_ENV_DAEMON", "true"),
            ("VAULT_ENV_STOP_TIMEOUT", "2s"),
            ("DB_USER", "vault:database/creds/app#username"),
        ],
        &["sh", "-c", "trap 'exit 0' TERM; echo \"user $DB_USER\"; while :; do sleep 0.1; done"],
    );
    std::thread::sleep(Duration::from_secs(2));
    // Revoke every token that came from the approle login, as an operator would.
    let accessors = bao.api("LIST", "auth/token/accessors", None)["data"]["keys"].as_array().cloned().unwrap_or_default();
    for accessor in accessors {
        let info = bao.api("POST", "auth/token/lookup-accessor", Some(json!({"accessor": accessor})));
        if info["data"]["path"] == "auth/approle/login" {
            bao.api("POST", "auth/token/revoke-accessor", Some(json!({"accessor": accessor})));
        }
    }
    std::thread::sleep(Duration::from_secs(7));
    let out = stop(child);
    assert_eq!(out.code, Some(0), "not 75: a login works\n{}", out.stderr);
    let users: BTreeSet<&str> = out.stdout.lines().filter_map(|l| l.strip_prefix("user ")).collect();
    assert!(users.len() >= 2, "restarted with new credentials: {users:?}\n{}", out.stderr);
    assert!(out.stderr.contains("the Vault token was refused"), "{}", out.stderr);
    assert!(out.stderr.contains("token revoked, and the leases it created with it"), "{}", out.stderr);
    assert!(!out.stderr.contains("could not revoke"), "the policy cannot revoke leases one by one, and need not: {}", out.stderr);
    let (code, left) = bao.try_api("LIST", "sys/leases/lookup/database/creds/app", None);
    assert!(code == 404 || left["data"]["keys"].as_array().is_none_or(Vec::is_empty), "leases left behind: {left}");
}

/// With Vault hung (its process stopped), SIGTERM took 60 s to exit (each
/// revocation retried for 30 s), past Kubernetes' 30 s grace period. Revocations now share one
/// budget of 5 s.
#[test]
fn shutdown_with_a_hung_vault_fits_in_the_grace_period() {
    let bao = Bao::dev();
    let db = MariaDb::start();
    database_engine(&bao, &db, "1m", "10m");
    let (child, _kept) = spawn_vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN), ("VAULT_ENV_DAEMON", "true"), ("DB_USER", "vault:database/creds/app#username")],
        &["sh", "-c", "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done"],
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = bao.pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let started = Instant::now();
    let out = stop(child);
    let took = started.elapsed();
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(took < Duration::from_secs(12), "exit took {took:?}\n{}", out.stderr);
    assert!(out.stderr.contains("did not answer the revocations within 5s"), "{}", out.stderr);
}

/// Signals are read by a task on vault-env's runtime, not by a thread of their own: one still
/// reaches the app at once while vault-env waits for Vault, here for the answer to a token
/// renewal that a stopped OpenBao never gives.
#[test]
fn a_signal_reaches_the_app_while_a_renewal_waits_for_a_hung_vault() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"k": "v"}));
    let created = Instant::now();
    let token =
        bao.api("POST", "auth/token/create", Some(json!({"ttl": "12s", "policies": ["root"]})))["auth"]["client_token"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (started, got) = (dir.path().join("started"), dir.path().join("usr1"));
    let app = format!("trap 'touch {}' USR1; touch {}; while :; do sleep 0.1; done", got.display(), started.display());
    let (child, _kept) = spawn_vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", &token), ("VAULT_ENV_DAEMON", "true"), ("P", "vault:secret/data/app#k")],
        &["sh", "-c", &app],
    );
    assert!(busy_wait(Duration::from_secs(10), || started.exists()), "the app did not start");
    let pid = bao.pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // The renewal went out at 70-80 % of the token's 12 s (under 10 s after it was made) and waits
    // for an answer until the token expires (11 s at the earliest).
    std::thread::sleep(Duration::from_millis(10_200).saturating_sub(created.elapsed()));
    let _ = Command::new("kill").args(["-USR1", &child.id().to_string()]).status();
    let delivered = busy_wait(Duration::from_millis(600), || got.exists());
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let out = stop(child);
    assert!(delivered, "SIGUSR1 did not reach the app while vault-env waited for Vault\n{}", out.stderr);
    assert!(out.stderr.contains("token renewed"), "the renewal was not in flight: {}", out.stderr);
}

/// SIGTERM while the app was stopping for a restart dropped the new secrets
/// unrevoked (the new lease and its database user lived until their TTL). They are revoked too.
#[test]
fn sigterm_during_a_restart_revokes_the_new_secrets_too() {
    let bao = Bao::dev();
    let db = MariaDb::start();
    // Capped at 4 s: replaced (the app restarted) about a second before that.
    database_engine(&bao, &db, "3s", "4s");
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("stopping");
    let app = format!("trap 'touch {}; sleep 3; exit 0' TERM; while :; do sleep 0.1; done", mark.display());
    let (child, _kept) = spawn_vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_TOKEN", ROOT_TOKEN),
            ("VAULT_ENV_DAEMON", "true"),
            ("VAULT_ENV_STOP_TIMEOUT", "10s"),
            ("DB_USER", "vault:database/creds/app#username"),
        ],
        &["sh", "-c", &app],
    );
    assert!(busy_wait(Duration::from_secs(15), || mark.exists()), "the app was not asked to stop for a restart");
    let out = stop(child);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("restarting the app with new secrets"), "{}", out.stderr);
    let (code, left) = bao.try_api("LIST", "sys/leases/lookup/database/creds/app", None);
    assert!(code == 404 || left["data"]["keys"].as_array().is_none_or(Vec::is_empty), "leases left behind: {left}\n{}", out.stderr);
}
