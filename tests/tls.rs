//! TLS to a real OpenBao: custom CA, skip-verify, server-name override, mutual TLS.

use crate::common::*;
use serde_json::json;

fn run(bao_addr: &str, extra: &[(&str, &str)]) -> Output {
    let mut env = vec![("VAULT_ADDR", bao_addr), ("VAULT_TOKEN", ROOT_TOKEN), ("P", "vault:secret/data/app#k"), ("VAULT_CLIENT_TIMEOUT", "2s")];
    env.extend_from_slice(extra);
    vault_env(&env, &args(&print_var("P")))
}

#[test]
fn custom_ca_skip_verify_and_server_name() {
    let bao = Bao::dev_tls();
    bao.kv2("app", json!({"k": "over-tls"}));
    let ca = bao.ca.as_ref().unwrap().to_str().unwrap().to_string();

    let out = run(&bao.addr, &[("VAULT_CACERT", &ca)]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "over-tls"), "{}", out.stderr);

    let pem = std::fs::read_to_string(&ca).unwrap();
    let out = run(&bao.addr, &[("VAULT_CACERT_BYTES", &pem)]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "over-tls"), "{}", out.stderr);

    let out = run(&bao.addr, &[]);
    assert_eq!(out.code, Some(69), "{}", out.stderr);
    assert!(out.stderr.contains("hint: set VAULT_CACERT"), "{}", out.stderr);

    let out = run(&bao.addr, &[("VAULT_SKIP_VERIFY", "true")]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "over-tls"), "{}", out.stderr);

    // The dev certificate names 127.0.0.1 and localhost.
    let out = run(&bao.addr, &[("VAULT_CACERT", &ca), ("VAULT_TLS_SERVER_NAME", "localhost")]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "over-tls"), "{}", out.stderr);
    let out = run(&bao.addr, &[("VAULT_CACERT", &ca), ("VAULT_TLS_SERVER_NAME", "vault.example.com")]);
    assert_eq!(out.code, Some(69), "{}", out.stderr);
    assert!(out.stderr.contains("VAULT_TLS_SERVER_NAME"), "{}", out.stderr);

    let out = run(&bao.addr, &[("VAULT_CACERT", "/nonexistent/ca.pem")]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("VAULT_CACERT: /nonexistent/ca.pem"), "{}", out.stderr);
}

#[test]
fn mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, server_crt, server_key) = ca_and_cert(certs.path(), "server", "IP:127.0.0.1,DNS:localhost");
    let (_, client_crt, client_key) = ca_and_cert(certs.path(), "client", "DNS:vault-env");
    let port = free_port_pair();
    let hcl = format!(
        "listener \"tcp\" {{\n address = \"127.0.0.1:{port}\"\n cluster_address = \"127.0.0.1:{}\"\n tls_cert_file = \"{}\"\n tls_key_file = \"{}\"\n \
         tls_client_ca_file = \"{}\"\n tls_require_and_verify_client_cert = true\n}}\n",
        port + 1,
        server_crt.display(),
        server_key.display(),
        ca.display()
    );
    let bao = Bao::start(BaoOptions { extra_config: Some(hcl), tls: false });
    bao.kv2("app", json!({"k": "over-mtls"}));
    let addr = format!("https://127.0.0.1:{port}");
    let ca = ca.to_str().unwrap();

    let out =
        run(&addr, &[("VAULT_CACERT", ca), ("VAULT_CLIENT_CERT", client_crt.to_str().unwrap()), ("VAULT_CLIENT_KEY", client_key.to_str().unwrap())]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "over-mtls"), "{}", out.stderr);

    let out = run(&addr, &[("VAULT_CACERT", ca)]);
    assert_eq!(out.code, Some(69), "{}", out.stderr);
    assert!(out.stderr.contains("VAULT_CLIENT_CERT"), "the hint names the setting: {}", out.stderr);
}

/// `VAULT_CACERT_RELOAD` (on by default, as in Vault's SDK): a long-running vault-env follows a
/// rotated Vault CA. One client reads from an OpenBao with one CA; OpenBao comes back on the
/// same port with a new CA, `VAULT_CACERT` is replaced, and the same client reads again. With
/// `VAULT_CACERT_RELOAD=false` the second read fails: the old CA does not know the new server.
#[test]
fn a_rotated_ca_file_is_read_again() {
    use vault_env::client::Client;
    use vault_env::config::{Config, Env};
    let port = free_port_pair();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("vault-ca.pem");
    let first = Bao::start_on(port, BaoOptions { extra_config: None, tls: true });
    std::fs::copy(first.ca.as_ref().unwrap(), &ca_file).unwrap();
    first.kv2("app", json!({"k": "first"}));
    let ca = ca_file.display().to_string();
    let client = |reload: &str| {
        let env: Env =
            [("VAULT_ADDR", first.addr.as_str()), ("VAULT_CACERT", ca.as_str()), ("VAULT_CACERT_RELOAD", reload), ("VAULT_MAX_RETRIES", "3")]
                .into_iter()
                .collect();
        Client::new(&Config::from_env(&env).unwrap()).unwrap().with_token(vault_env::SecretString::new(ROOT_TOKEN))
    };
    let (reloading, fixed) = (client("true"), client("false"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let read = |c: &Client| runtime.block_on(c.impatient().read("secret/data/app", None)).map(|s| s.unwrap().data.unwrap()["data"]["k"].clone());
    assert_eq!(read(&reloading).unwrap(), "first");
    assert_eq!(read(&fixed).unwrap(), "first");
    drop(first);
    let second = Bao::start_on(port, BaoOptions { extra_config: None, tls: true });
    second.kv2("app", json!({"k": "second"}));
    std::fs::copy(second.ca.as_ref().unwrap(), &ca_file).unwrap();
    assert_eq!(read(&reloading).unwrap(), "second");
    let stale = read(&fixed).unwrap_err().to_string();
    assert!(stale.contains("UnknownIssuer") || stale.contains("certificate"), "{stale}");
}

/// `VAULT_ADDR=unix:///path` (Vault Agent's listener, as Vault's client reads it): HTTP over the
/// socket; here OpenBao's own unix listener.
#[test]
fn a_unix_socket_address() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bao.sock");
    let hcl = format!("listener \"unix\" {{\n  address = \"{}\"\n  tls_disable = true\n}}\n", socket.display());
    let bao = Bao::start(BaoOptions { extra_config: Some(hcl), tls: false });
    bao.kv2("app", json!({"k": "over-a-socket"}));
    let addr = format!("unix://{}", socket.display());
    let out = run(&addr, &[]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "over-a-socket"), "{}", out.stderr);
    let out = run("unix://relative.sock", &[]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("VAULT_ADDR"), "{}", out.stderr);
}
