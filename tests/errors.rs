//! What users see when things go wrong: every problem named, exit codes, Vault down at start —
//! and never a secret value, checked with planted canaries.

use crate::common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const CANARY: &str = "CANARY-7f3a9c";

#[test]
fn secret_values_never_appear_in_vault_env_output() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"password": format!("{CANARY}-pw"), "nested": {"x": format!("{CANARY}-nested")}}));
    bao.mount("transit", "transit", json!({}));
    bao.api("POST", "transit/keys/app", Some(json!({})));
    let plaintext = base64_encode(&format!("{CANARY}-transit"));
    let ciphertext =
        bao.api("POST", "transit/encrypt/app", Some(json!({"plaintext": plaintext})))["data"]["ciphertext"].as_str().unwrap().to_string();
    let write = format!(r#">>vault:transit/encrypt/app#nokey#{{"plaintext":"{plaintext}"}}"#);
    let inline = format!("postgres://admin:{CANARY}-literal@db/${{vault:secret/data/app#missing}}");
    let base = [("VAULT_ADDR", bao.addr.as_str()), ("VAULT_TOKEN", ROOT_TOKEN), ("VAULT_LOG_LEVEL", "trace"), ("VAULT_TRANSIT_KEY_ID", "app")];
    let cases: Vec<Vec<(&str, &str)>> = vec![
        // success: vault-env's own logs at trace level (the app prints nothing)
        vec![("OK", "vault:secret/data/app#password"), ("T", &ciphertext)],
        // failures of every kind next to good values
        vec![("OK", "vault:secret/data/app#password"), ("BAD_KEY", "vault:secret/data/app#nope")],
        vec![("OK", "vault:secret/data/app#password"), ("MAP", "vault:secret/data/app#nested")],
        vec![("OK", "vault:secret/data/app#password"), ("TPL", "vault:secret/data/app#${.password | b64dec}")],
        vec![("OK", "vault:secret/data/app#password"), ("W", &write)],
        vec![("OK", "vault:secret/data/app#password"), ("INLINE", &inline)],
        vec![("T", &ciphertext), ("SYNTAX", "vault:secret/data/app")],
    ];
    for case in cases {
        let env = [&base[..], &case[..]].concat();
        let out = vault_env(&env, &["true"]);
        assert!(!out.all().contains(CANARY), "secret leaked with {case:?}:\n{}", out.all());
        assert!(!out.all().contains(&ciphertext[9..]), "full ciphertext printed with {case:?}");
    }
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn every_bad_setting_is_reported_in_one_run() {
    let out = vault_env(
        &[
            ("VAULT_CLIENT_TIMEOUT", "soon"),
            ("VAULT_SKIP_VERIFY", "maybe"),
            ("VAULT_ENV_DAEMON", "yes"),
            ("VAULT_AUTH_METHOD", "magic"),
            ("VAULT_TOKEN", "s.CANARY-should-not-print"),
            ("P", "vault:secret/data/x#k"),
        ],
        &["true"],
    );
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    for line in [
        "vault-env: VAULT_SKIP_VERIFY=\"maybe\" is not valid: expected true or false",
        // Bank-Vaults reads "yes" as false (Go's ParseBool fails): an error here, not true.
        "vault-env: VAULT_ENV_DAEMON=\"yes\" is not valid: expected true or false",
        "vault-env: VAULT_CLIENT_TIMEOUT=\"soon\" is not valid",
        "vault-env: VAULT_AUTH_METHOD=\"magic\" is not valid",
    ] {
        assert!(out.stderr.contains(line), "missing {line:?} in:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("CANARY"), "{}", out.stderr);
}

#[test]
fn every_malformed_reference_is_reported_in_one_run() {
    let out = vault_env(
        &[("A", "vault:secret/data/x"), ("B", "vault:secret/data/x#${nofunc .k}"), ("C", "vault:v1:abc"), ("D", "vault:x#k#notanumber")],
        &["true"],
    );
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    for prefix in
        ["vault-env: A: vault:secret/data/x: malformed reference", "vault-env: B: ", "vault-env: C: ", "vault-env: D: vault:x#k#…: malformed"]
    {
        assert!(out.stderr.contains(prefix), "missing {prefix:?} in:\n{}", out.stderr);
    }
    assert!(out.stderr.contains("4 variable(s) could not be resolved; the app was not started"), "{}", out.stderr);
}

#[test]
fn permission_denied_is_77_and_names_the_reference() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"k": "v"}));
    let token = bao.token(&["default"], "1h");
    let out = vault_env(&[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", &token), ("P", "vault:secret/data/app#k")], &["true"]);
    assert_eq!(out.code, Some(77), "{}", out.stderr);
    assert!(out.stderr.contains("P: vault:secret/data/app#k: permission denied (403)"), "{}", out.stderr);
}

#[test]
fn unreachable_vault_is_retried_then_69_without_starting_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let port = free_port();
    let start = Instant::now();
    let out = vault_env(
        &[("VAULT_ADDR", &format!("http://127.0.0.1:{port}")), ("VAULT_TOKEN", "t"), ("VAULT_CLIENT_TIMEOUT", "2s"), ("P", "vault:secret/data/x#k")],
        &["touch", marker.to_str().unwrap()],
    );
    let took = start.elapsed();
    assert_eq!(out.code, Some(69), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("cannot reach Vault at http://127.0.0.1:{port}")), "{}", out.stderr);
    assert!(!marker.exists(), "the app was started");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(15), "retried for VAULT_CLIENT_TIMEOUT, took {took:?}");
}

#[test]
fn vault_that_comes_up_late_is_waited_for() {
    let port = free_port_pair();
    let addr = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(vault_env_bin());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.path())
        .env("VAULT_ADDR", &addr)
        .env("VAULT_TOKEN", ROOT_TOKEN)
        .env("VAULT_CLIENT_TIMEOUT", "30s")
        .env("P", "vault:sys/mounts/secret#type")
        .args(args(&print_var("P")));
    let runner = std::thread::spawn(move || run_with_timeout(cmd, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(1500));
    let hcl = None;
    let _bao = Bao::start_on(port, BaoOptions { extra_config: hcl, tls: false });
    let out = runner.join().unwrap();
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "kv"), "{}", out.stderr);
}
