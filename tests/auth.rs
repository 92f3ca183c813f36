//! Authentication against a real OpenBao: token file, jwt (a service-account-like JWT signed by
//! the test), approle, namespaces, and `VAULT_TOKEN=vault:login`.

use crate::common::*;
use serde_json::json;

const READ_APP: &str = r#"path "secret/data/app" { capabilities = ["read"] }"#;

fn with_app_secret() -> Bao {
    let bao = Bao::dev();
    bao.kv2("app", json!({"password": "s3cr3t"}));
    bao.policy("read-app", READ_APP);
    bao
}

#[test]
fn token_file_takes_precedence() {
    let bao = with_app_secret();
    let token = bao.token(&["read-app"], "1h");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let p = print_var("P");
    let out = vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_TOKEN_FILE", file.to_str().unwrap()),
            ("VAULT_TOKEN", "not-a-valid-token"),
            ("P", "vault:secret/data/app#password"),
        ],
        &args(&p),
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "s3cr3t"), "{}", out.stderr);

    std::fs::write(&file, "").unwrap();
    let out =
        vault_env(&[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN_FILE", file.to_str().unwrap()), ("P", "vault:secret/data/app#password")], &["true"]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("VAULT_TOKEN_FILE:") && out.stderr.contains("is empty"), "{}", out.stderr);
}

/// jwt auth configured the way a cluster's service-account issuer would be.
fn with_jwt_auth(bao: &Bao, mount: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = jwt_keypair(dir.path());
    bao.enable_auth(mount, "jwt");
    bao.api(
        "POST",
        &format!("auth/{mount}/config"),
        Some(json!({"jwt_validation_pubkeys": [public], "bound_issuer": "https://kubernetes.default.svc.cluster.local"})),
    );
    bao.api(
        "POST",
        &format!("auth/{mount}/role/app"),
        Some(json!({
            "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
            "bound_subject": "system:serviceaccount:default:app",
            "token_policies": ["read-app"], "token_ttl": "60s", "token_max_ttl": "120s"
        })),
    );
    (dir, key)
}

#[test]
fn jwt_login_with_a_service_account_token() {
    let bao = with_app_secret();
    let (dir, key) = with_jwt_auth(&bao, "kubernetes");
    let jwt_file = dir.path().join("token");
    std::fs::write(&jwt_file, mint_sa_jwt(&key, "default", "app", "vault", 300)).unwrap();
    let p = print_var("P");
    // Bank-Vaults defaults: VAULT_AUTH_METHOD=jwt, VAULT_PATH=kubernetes.
    let out = vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_ROLE", "app"),
            ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", jwt_file.to_str().unwrap()),
            ("P", "vault:secret/data/app#password"),
        ],
        &args(&p),
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "s3cr3t"), "{}", out.stderr);
    assert!(out.stderr.contains("logged in to Vault"), "{}", out.stderr);

    // VAULT_AUTH_METHOD=kubernetes and VAULT_JWT_FILE work the same way against a jwt mount.
    let out = vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_ROLE", "app"),
            ("VAULT_AUTH_METHOD", "kubernetes"),
            ("VAULT_JWT_FILE", jwt_file.to_str().unwrap()),
            ("P", "vault:secret/data/app#password"),
        ],
        &args(&p),
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "s3cr3t"), "{}", out.stderr);

    // A token for another service account is refused: exit 77, the role and mount named.
    std::fs::write(&jwt_file, mint_sa_jwt(&key, "default", "intruder", "vault", 300)).unwrap();
    let out = vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_ROLE", "app"), ("VAULT_JWT_FILE", jwt_file.to_str().unwrap()), ("P", "vault:secret/data/app#password")],
        &["true"],
    );
    assert_eq!(out.code, Some(77), "{}", out.stderr);
    assert!(out.stderr.contains("jwt login failed (auth/kubernetes/login, role \"app\")"), "{}", out.stderr);

    // A missing JWT file names the variable and gives a hint.
    let out = vault_env(
        &[("VAULT_ADDR", &bao.addr), ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", "/nonexistent/token"), ("P", "vault:secret/data/app#password")],
        &["true"],
    );
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("KUBERNETES_SERVICE_ACCOUNT_TOKEN: cannot read /nonexistent/token"), "{}", out.stderr);
}

#[test]
fn approle_login_with_values_and_files() {
    let bao = with_app_secret();
    bao.enable_auth("approle", "approle");
    bao.api("POST", "auth/approle/role/app", Some(json!({"token_policies": ["read-app"], "token_ttl": "60s"})));
    let role_id = bao.api("GET", "auth/approle/role/app/role-id", None)["data"]["role_id"].as_str().unwrap().to_string();
    let secret_id = bao.api("POST", "auth/approle/role/app/secret-id", Some(json!({})))["data"]["secret_id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret-id");
    std::fs::write(&secret_file, &secret_id).unwrap();
    let p = print_var("P");
    let out = vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_AUTH_METHOD", "approle"),
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID_FILE", secret_file.to_str().unwrap()),
            ("P", "vault:secret/data/app#password"),
        ],
        &args(&p),
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "s3cr3t"), "{}", out.stderr);

    let out = vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_AUTH_METHOD", "approle"),
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID", "wrong-secret-id"),
            ("P", "vault:secret/data/app#password"),
        ],
        &["true"],
    );
    assert_eq!(out.code, Some(77), "{}", out.stderr);
    assert!(!out.all().contains("wrong-secret-id"), "the secret id must not be printed: {}", out.all());
}

#[test]
fn namespace_header_reaches_every_request() {
    let bao = Bao::dev();
    bao.api("POST", "sys/namespaces/team-a", Some(json!({})));
    let (code, body) = bao.try_api_as(ROOT_TOKEN, Some("team-a"), "POST", "sys/mounts/kv", Some(json!({"type": "kv", "options": {"version": "2"}})));
    assert!(code < 300, "mount in namespace: {code} {body}");
    let (code, body) = bao.try_api_as(ROOT_TOKEN, Some("team-a"), "POST", "kv/data/app", Some(json!({"data": {"k": "in-namespace"}})));
    assert!(code < 300, "write in namespace: {code} {body}");
    let p = print_var("P");
    let env = [("VAULT_ADDR", bao.addr.as_str()), ("VAULT_TOKEN", ROOT_TOKEN), ("P", "vault:kv/data/app#k")];
    let out = vault_env(&[&env[..], &[("VAULT_NAMESPACE", "team-a")]].concat(), &args(&p));
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "in-namespace"), "{}", out.stderr);
    let out = vault_env(&env, &args(&p));
    assert_eq!(out.code, Some(65), "without the namespace the path does not exist: {}", out.stderr);
}

#[test]
fn vault_login_hands_the_obtained_token_to_the_app() {
    let bao = with_app_secret();
    bao.enable_auth("approle", "approle");
    bao.api("POST", "auth/approle/role/app", Some(json!({"token_policies": ["read-app"], "token_ttl": "300s"})));
    let role_id = bao.api("GET", "auth/approle/role/app/role-id", None)["data"]["role_id"].as_str().unwrap().to_string();
    let secret_id = bao.api("POST", "auth/approle/role/app/secret-id", Some(json!({})))["data"]["secret_id"].as_str().unwrap().to_string();
    let out = vault_env(
        &[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_TOKEN", "vault:login"),
            ("VAULT_AUTH_METHOD", "approle"),
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID", &secret_id),
            ("VAULT_ROLE", "app"),
            ("VAULT_CLIENT_TIMEOUT", "7s"),
        ],
        // The app uses its token while it runs: it reads the secret itself.
        &[
            "sh",
            "-c",
            "printf '%s|%s|%s|%s|' \"$VAULT_TOKEN\" \"$VAULT_ADDR\" \"$VAULT_CLIENT_TIMEOUT\" \"${VAULT_ROLE-<unset>}\"; \
             curl -sS -H \"X-Vault-Token: $VAULT_TOKEN\" \"$VAULT_ADDR/v1/secret/data/app\"",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let parts: Vec<&str> = out.stdout.splitn(5, '|').collect();
    assert_eq!(&parts[1..4], [bao.addr.as_str(), "7s", "<unset>"], "login-safe settings pass, VAULT_ROLE does not");
    let token = parts[0];
    assert!(token.starts_with("s.") || token.starts_with("hvs."), "a real token, got {token:?}");
    assert!(parts[4].contains("s3cr3t"), "the app's token reads the secret: {}", parts[4]);
    // The renewable login token made vault-env choose daemon mode, which revokes it on exit.
    assert!(out.stderr.contains("daemon mode: the app's vault:login token must be renewed"), "{}", out.stderr);
    let (code, _) = bao.try_api_as(token, None, "GET", "auth/token/lookup-self", None);
    assert_eq!(code, 403, "the token is revoked once the app has exited");
}

#[test]
fn token_never_reaches_the_app_without_login() {
    let bao = with_app_secret();
    let out =
        vault_env(&[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN), ("VAULT_ROLE", "r"), ("P", "vault:secret/data/app#password")], &["env"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("P=s3cr3t\n"), "{}", out.stdout);
    for name in ["VAULT_TOKEN", "VAULT_ADDR", "VAULT_ROLE"] {
        assert!(!out.stdout.contains(&format!("{name}=")), "{name} leaked: {}", out.stdout);
    }
    let out = vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", ROOT_TOKEN), ("VAULT_ENV_PASSTHROUGH", "VAULT_ADDR"), ("P", "vault:secret/data/app#password")],
        &["env"],
    );
    assert!(out.stdout.contains(&format!("VAULT_ADDR={}\n", bao.addr)) && !out.stdout.contains("VAULT_TOKEN="), "{}", out.stdout);
}
