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
