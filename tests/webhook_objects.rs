//! vault-secrets-webhook resolving `vault:` references in Secrets, ConfigMaps and custom objects
//! against a real OpenBao, through real AdmissionReviews over HTTPS. The webhook logs in with its
//! own service-account JWT (jwt auth configured like a cluster's issuer) or, with
//! `vault-serviceaccount`, with a token the fixture Kubernetes API issues for that account.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const A: &str = "vault.security.banzaicloud.io/";

/// OpenBao with KV v2 and v1 secrets, a transit key, and jwt auth with a role for the webhook
/// (`reader`) and one for the `app` ServiceAccount of namespace `shop` (`shop-app`).
struct Vault {
    bao: Bao,
    key: PathBuf,
    jwt_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn vault() -> Vault {
    let bao = Bao::dev();
    bao.kv2("dockerrepo", json!({"DOCKER_REPO_USER": "dockerrepouser", "DOCKER_REPO_PASSWORD": "dockerrepopassword"}));
    bao.kv2("accounts/aws", json!({"AWS_ACCESS_KEY_ID": "secretId", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "BIN": STANDARD.encode([0u8, 1, 2, 255])}));
    bao.kv2("app", json!({"password": "app-only"}));
    bao.mount("kv1", "kv", json!({"version": "1"}));
    bao.api("POST", "kv1/legacy", Some(json!({"password": "v1pass"})));
    bao.mount("transit", "transit", json!({}));
    bao.api("POST", "transit/keys/mykey", None);
    bao.policy(
        "reader",
        r#"path "secret/data/*" { capabilities = ["read"] }
           path "kv1/*" { capabilities = ["read"] }
           path "transit/decrypt/mykey" { capabilities = ["update"] }
           path "transit/encrypt/mykey" { capabilities = ["update"] }"#,
    );
    bao.policy("app-only", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = jwt_keypair(dir.path());
    bao.enable_auth("kubernetes", "jwt");
    bao.api(
        "POST",
        "auth/kubernetes/config",
        Some(json!({"jwt_validation_pubkeys": [public], "bound_issuer": "https://kubernetes.default.svc.cluster.local"})),
    );
    for (role, subject, audience, policy) in [
        ("reader", "system:serviceaccount:vault-infra:vault-secrets-webhook", "vault", "reader"),
        ("shop-app", "system:serviceaccount:shop:app", "https://kubernetes.default.svc", "app-only"),
    ] {
        bao.api(
            "POST",
            &format!("auth/kubernetes/role/{role}"),
            Some(json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": [audience], "bound_subject": subject,
                        "token_policies": [policy], "token_ttl": "300s"})),
        );
    }
    let jwt_file = dir.path().join("webhook-token");
    std::fs::write(&jwt_file, mint_sa_jwt(&key, "vault-infra", "vault-secrets-webhook", "vault", 600)).unwrap();
    Vault { bao, key, jwt_file, _dir: dir }
}

impl Vault {
    /// The webhook with `TLS_CLIENT_CA_FILE`, as a default install should run it: only callers
    /// with a client certificate are answered, and [`Webhook::post`] presents the API server's.
    fn webhook(&self, extra: &[(&str, &str)]) -> Webhook {
        Webhook::start_verifying_callers(&self.env(extra).iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
    }

    /// The webhook without a client CA: it cannot tell the API server from anyone else.
    fn webhook_without_client_ca(&self, extra: &[(&str, &str)]) -> Webhook {
        Webhook::start(&self.env(extra).iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
    }

    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
        let mut env = vec![
            ("VAULT_ADDR", self.bao.addr.clone()),
            ("VAULT_ROLE", "reader".to_string()),
            ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", self.jwt_file.display().to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    }

    /// Token accessors that exist now (the root token is one).
    fn token_count(&self) -> usize {
        self.bao.api("LIST", "auth/token/accessors", None)["data"]["keys"].as_array().map_or(0, Vec::len)
    }

    fn encrypt(&self, plaintext: &str) -> String {
        let out = self.bao.api("POST", "transit/encrypt/mykey", Some(json!({"plaintext": STANDARD.encode(plaintext)})));
        out["data"]["ciphertext"].as_str().unwrap().to_string()
    }
}

/// An AdmissionReview for `object`, as the API server sends it.
fn review(resource: &str, object: Value, operation: &str, dry_run: bool) -> Value {
    let kind = object["kind"].clone();
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", fastrand::u64(..)),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"], "namespace": "shop", "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}})
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    String::from_utf8(STANDARD.decode(v.as_str().expect("a base64 string")).unwrap()).unwrap()
}

/// Posts the review and returns the patched object (or panics with the answer).
fn admitted(hook: &Webhook, path: &str, review: &Value) -> Value {
    let (code, answer) = hook.post(path, review);
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}\n{}", hook.log());
    apply(review, &answer).unwrap_or_else(|| panic!("no patch: {answer}"))
}

fn denied(hook: &Webhook, path: &str, review: &Value) -> String {
    let (code, answer) = hook.post(path, review);
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(false)), "{answer}");
    answer["response"]["status"]["message"].as_str().unwrap().to_string()
}

fn docker_config(user: &str, password: &str) -> Value {
    json!({"auths": {
        "https://index.docker.io/v1/": {"username": user, "password": password, "auth": b64(&format!("{user}:{password}"))},
        "registry.example.com": {"username": "ci", "password": "plain", "email": "ci@example.com", "auth": b64("ci:plain")}}})
}

fn docker_secret(name: &str, config: &Value, addr: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": "shop", "annotations": {
            format!("{A}vault-addr"): addr, format!("{A}vault-role"): "reader",
            format!("{A}vault-skip-verify"): "true", format!("{A}vault-path"): "kubernetes"}},
        "data": {".dockerconfigjson": b64(&config.to_string())}})
}

fn registry_entry(secret: &Value, registry: &str) -> Value {
    let config: Value = serde_json::from_str(&unb64(&secret["data"][".dockerconfigjson"])).unwrap();
    config["auths"][registry].clone()
}

#[test]
fn secrets_docker_config_kv_transit_write_token_reuse_and_revoke() {
    let v = vault();
    let tokens_before = v.token_count();
    let mut hook = v.webhook(&[]);
    let addr = v.bao.addr.as_str();

    // The kubectl create secret docker-registry form: references as username and password.
    let config = docker_config("vault:secret/data/dockerrepo#DOCKER_REPO_USER", "vault:secret/data/dockerrepo#DOCKER_REPO_PASSWORD");
    let out = admitted(&hook, "/secrets", &review("secrets", docker_secret("dockerhub", &config, addr), "CREATE", false));
    let hub = registry_entry(&out, "https://index.docker.io/v1/");
    assert_eq!(hub, json!({"username": "dockerrepouser", "password": "dockerrepopassword", "auth": b64("dockerrepouser:dockerrepopassword")}));
    assert_eq!(registry_entry(&out, "registry.example.com"), config["auths"]["registry.example.com"], "non-Vault entries are kept");
    let secret: Secret = serde_json::from_value(out).expect("a valid Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));

    // The documented base64 blob writes the path with a trailing slash before '#'.
    let config = docker_config("vault:secret/data/dockerrepo/#DOCKER_REPO_USER", "vault:secret/data/dockerrepo/#DOCKER_REPO_PASSWORD");
    let out = admitted(&hook, "/secrets", &review("secrets", docker_secret("dockerhub-blob", &config, addr), "CREATE", false));
    assert_eq!(registry_entry(&out, "https://index.docker.io/v1/")["auth"], b64("dockerrepouser:dockerrepopassword"));

    // Every other reference form, in data and stringData; plain values untouched.
    let ciphertext = v.encrypt("from transit");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "mixed", "namespace": "shop", "annotations": {format!("{A}transit-key-id"): "mykey"}},
        "data": {
            "inline": b64("Inline: ${vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID} AWS_ACCESS_KEY_ID"),
            "kv1": b64("vault:kv1/legacy#password"),
            "template": b64("vault:secret/data/accounts/aws#AWS key in base64: ${.AWS_ACCESS_KEY_ID | b64enc}"),
            "transit": b64(&ciphertext),
            "plain": b64("unchanged")},
        "stringData": {"encrypted": ">>vault:transit/encrypt/mykey#ciphertext#{\"plaintext\":\"aGVsbG8=\"}"}});
    let out = admitted(&hook, "/secrets", &review("secrets", secret, "CREATE", false));
    let data = &out["data"];
    assert_eq!(unb64(&data["inline"]), "Inline: secretId AWS_ACCESS_KEY_ID");
    assert_eq!(unb64(&data["kv1"]), "v1pass");
    assert_eq!(unb64(&data["template"]), "AWS key in base64: c2VjcmV0SWQ=");
    assert_eq!(unb64(&data["transit"]), "from transit");
    assert_eq!(unb64(&data["plain"]), "unchanged");
    let written = out["stringData"]["encrypted"].as_str().unwrap();
    assert!(written.starts_with("vault:v1:"), "the >>vault: write answered a ciphertext");
    let decrypted = v.bao.api("POST", "transit/decrypt/mykey", Some(json!({"ciphertext": written})));
    assert_eq!(decrypted["data"]["plaintext"], "aGVsbG8=");
    serde_json::from_value::<Secret>(out).expect("a valid Secret");

    // One login served all three Secrets.
    let metrics = hook.get("/metrics").1;
    assert!(metrics.contains(&format!("vault_webhook_vault_logins_total{{target=\"{addr}\",outcome=\"ok\"}} 1")), "{metrics}");
    assert_eq!(v.token_count(), tokens_before + 1);
    assert!(hook.log().contains("vault-skip-verify is ignored"), "skip-verify needs VAULT_ALLOW_OBJECT_SKIP_VERIFY");

    // A dry run checks but neither reads nor writes: no patch.
    let dry = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dry", "namespace": "shop"},
        "stringData": {"w": ">>vault:transit/encrypt/mykey#ciphertext"}});
    let dry_review = review("secrets", dry, "CREATE", true);
    let (code, answer) = hook.post("/secrets", &dry_review);
    assert_eq!((code, answer["response"]["allowed"].clone(), apply(&dry_review, &answer)), (200, json!(true), None));

    // Shutdown revokes the webhook's token.
    assert!(std::process::Command::new("kill").args(["-TERM", &hook.proc.0.id().to_string()]).status().unwrap().success());
    assert!(busy_wait(Duration::from_secs(10), || matches!(hook.proc.0.try_wait(), Ok(Some(_)))), "the webhook did not stop");
    assert_eq!(v.token_count(), tokens_before, "{}", hook.log());
    assert!(hook.log().contains("revoked_vault_tokens=1"), "{}", hook.log());
    for value in ["dockerrepopassword", "s3cr3t", "secretId", "v1pass", "from transit"] {
        assert!(!hook.log().contains(value), "{value} in the log");
    }
}

#[test]
fn config_maps_data_and_binary_data() {
    let v = vault();
    let hook = v.webhook(&[]);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws", "namespace": "shop"},
        "data": {
            "aws-access-key-id": "vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID",
            "aws-access-key-id-formatted": "vault:secret/data/accounts/aws#AWS key in base64: ${.AWS_ACCESS_KEY_ID | b64enc}",
            "aws-access-key-id-inline": "AWS_ACCESS_KEY_ID: ${vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY: ${vault:secret/data/accounts/aws#AWS_SECRET_ACCESS_KEY}",
            "plain": "x"},
        "binaryData": {"aws-access-key-id-binary": b64("vault:secret/data/accounts/aws#BIN"), "raw": "AAEC"}});
    let out = admitted(&hook, "/configmaps", &review("configmaps", cm, "UPDATE", false));
    let cm: ConfigMap = serde_json::from_value(out).expect("a valid ConfigMap");
    let data = cm.data.unwrap();
    assert_eq!(data["aws-access-key-id"], "secretId");
    assert_eq!(data["aws-access-key-id-formatted"], "AWS key in base64: c2VjcmV0SWQ=");
    assert_eq!(data["aws-access-key-id-inline"], "AWS_ACCESS_KEY_ID: secretId AWS_SECRET_ACCESS_KEY: s3cr3t");
    assert_eq!(data["plain"], "x");
    let binary = cm.binary_data.unwrap();
    assert_eq!(binary["aws-access-key-id-binary"].0, [0u8, 1, 2, 255], "stored decoded");
    assert_eq!(binary["raw"].0, [0u8, 1, 2]);
}

#[test]
fn objects_without_references_never_contact_vault() {
    // A listener that is never accepted from: any connection attempt would be queued on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let hook = Webhook::start(&[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "never-used")]);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
        "data": {"a": b64("plain"), "b": b64("vaultish: not a reference")}});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop",
        "annotations": {format!("{A}vault-addr"): "http://169.254.169.254"}}, "data": {"a": "b"}});
    let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": "shop"},
        "spec": {"rules": [{"host": "shop.example.com"}]}});
    for (path, resource, object) in [("/secrets", "secrets", secret), ("/configmaps", "configmaps", cm), ("/objects", "ingresses", ingress)] {
        let r = review(resource, object, "CREATE", false);
        let (code, answer) = hook.post(path, &r);
        assert_eq!((code, answer["response"]["allowed"].clone(), apply(&r, &answer)), (200, json!(true), None), "{path}");
    }
    assert!(listener.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "Vault was contacted");
}

#[test]
fn custom_objects_errors_ignore_missing_and_addr_allowlist() {
    let v = vault();
    let other = "http://127.0.0.1:1";
    let hook = v.webhook(&[("VAULT_ADDR_ALLOWLIST", other)]);

    let thing = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "shop"},
        "spec": {"caBundle": "vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID",
                 "vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID": "map keys are never touched",
                 "nested": [{"url": "https://${vault:secret/data/dockerrepo#DOCKER_REPO_USER}@registry"}, 42, true]}});
    let out = admitted(&hook, "/objects", &review("widgets", thing.clone(), "CREATE", false));
    assert_eq!(out["spec"]["caBundle"], "secretId");
    assert_eq!(out["spec"]["vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID"], "map keys are never touched");
    assert_eq!(out["spec"]["nested"], json!([{"url": "https://dockerrepouser@registry"}, 42, true]));

    // A missing secret fails the admission, naming object, place and reference; never a value.
    let mut missing = thing.clone();
    missing["spec"]["extra"] = json!("vault:secret/data/nope#key");
    let message = denied(&hook, "/objects", &review("widgets", missing.clone(), "CREATE", false));
    assert!(message.contains("widget shop/w: spec.extra: vault:secret/data/nope#key: path not found"), "{message}");
    assert!(!message.contains("secretId"), "{message}");
    // … or is left as it was with ignore-missing (which Bank-Vaults ignores for objects).
    missing["metadata"]["annotations"] = json!({format!("{A}vault-ignore-missing-secrets"): "true"});
    let out = admitted(&hook, "/objects", &review("widgets", missing, "CREATE", false));
    assert_eq!((out["spec"]["extra"].as_str(), out["spec"]["caBundle"].as_str()), (Some("vault:secret/data/nope#key"), Some("secretId")));

    // vault-addr must be allowed: loopback needs VAULT_ALLOW_PRIVATE_ADDR, metadata never.
    let mut elsewhere = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop",
        "annotations": {format!("{A}vault-addr"): other, format!("{A}vault-role"): "reader"}},
        "data": {"ca": "vault:secret/data/pki#ca"}});
    let message = denied(&hook, "/configmaps", &review("configmaps", elsewhere.clone(), "CREATE", false));
    assert!(message.contains(&format!("annotation {A}vault-addr")) && message.contains("VAULT_ALLOW_PRIVATE_ADDR"), "{message}");
    elsewhere["metadata"]["annotations"][format!("{A}vault-addr")] = json!("http://169.254.169.254/latest/meta-data/");
    let message = denied(&hook, "/configmaps", &review("configmaps", elsewhere.clone(), "CREATE", false));
    assert!(message.contains("refused"), "{message}");
    assert!(!hook.log().contains("169.254.169.254:80"), "no request to the metadata address");
}

#[test]
fn allowlisted_private_address_and_service_account_login() {
    let v = vault();
    // Another loopback address for the same Vault: allowed by the allowlist plus
    // VAULT_ALLOW_PRIVATE_ADDR, spelled in upper case to show it is normalized.
    let gate = Gate::to(&v.bao.addr);
    let api = KubeApi::start();
    api.put(
        "shop",
        "serviceaccounts",
        "app",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "shop"}}),
    );
    let tokens = api.dir.path().join("shop/tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(tokens.join("app"), mint_sa_jwt(&v.key, "shop", "app", "https://kubernetes.default.svc", 600)).unwrap();
    let kubeconfig = api.kubeconfig.display().to_string();
    let addr_upper = format!("{}/", gate.addr.replace("http://", "HTTP://"));
    let allowlist = format!("https://vault.example.com, {}", gate.addr);
    let hook = v.webhook(&[("KUBECONFIG", &kubeconfig), ("VAULT_ADDR_ALLOWLIST", &allowlist), ("VAULT_ALLOW_PRIVATE_ADDR", "true")]);

    let cm = |name: &str, key: &str, annotations: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
            "data": {"v": key}})
    };
    // Logged in as the object's ServiceAccount: its role reads secret/data/app only.
    let as_app = json!({format!("{A}vault-serviceaccount"): "app", format!("{A}vault-role"): "shop-app", format!("{A}vault-addr"): addr_upper});
    let out = admitted(&hook, "/configmaps", &review("configmaps", cm("a", "vault:secret/data/app#password", as_app.clone()), "CREATE", false));
    assert_eq!(out["data"]["v"], "app-only");
    assert!(api.requests().contains(&"POST /api/v1/namespaces/shop/serviceaccounts/app/token".to_string()), "{:?}", api.requests());
    let message =
        denied(&hook, "/configmaps", &review("configmaps", cm("b", "vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID", as_app), "CREATE", false));
    assert!(message.contains("configmap shop/b: data[v]: vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID: permission denied"), "{message}");
    // The webhook's own identity still reads it.
    let out = admitted(
        &hook,
        "/configmaps",
        &review("configmaps", cm("c", "vault:secret/data/accounts/aws#AWS_ACCESS_KEY_ID", json!({})), "CREATE", false),
    );
    assert_eq!(out["data"]["v"], "secretId");
}

/// A forged review from any pod got values resolved with the webhook's
/// identity and, with `vault-serviceaccount`, a login as any ServiceAccount. With
/// `TLS_CLIENT_CA_FILE`, callers without a client certificate get nothing; without it,
/// `vault-serviceaccount` is refused unless explicitly allowed.
#[test]
fn only_verified_callers_get_values_and_service_account_logins() {
    let v = vault();
    let cm = |annotations: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop", "annotations": annotations},
               "data": {"v": "vault:secret/data/app#password"}})
    };
    let forged = review("configmaps", cm(json!({})), "CREATE", false);
    let hook = v.webhook(&[]);
    for path in ["/configmaps", "/secrets", "/objects", "/pods"] {
        let (code, answer) = hook.post_without_certificate(path, &forged);
        assert_eq!(code, 401, "{path}: {answer}");
        assert!(!answer.to_string().contains("app-only"), "{answer}");
    }
    assert_eq!(hook.get("/healthz").0, 200, "the kubelet's probes carry no certificate");
    assert_eq!(admitted(&hook, "/configmaps", &forged)["data"]["v"], "app-only", "the API server's certificate is accepted");

    // Without verified callers: vault-serviceaccount is refused before any Kubernetes or Vault call.
    let open = v.webhook_without_client_ca(&[]);
    let as_admin = json!({format!("{A}vault-serviceaccount"): "vault-admin", format!("{A}vault-role"): "admin-role"});
    let message = denied(&open, "/configmaps", &review("configmaps", cm(as_admin.clone()), "CREATE", false));
    assert!(message.contains(&format!("annotation {A}vault-serviceaccount: logging in as a ServiceAccount needs callers verified")), "{message}");
    // ... unless explicitly allowed (then it tries the Kubernetes API: there is none here).
    let allowed = v.webhook_without_client_ca(&[("VAULT_SERVICEACCOUNT_ALLOW_UNVERIFIED_CALLERS", "true")]);
    let message = denied(&allowed, "/configmaps", &review("configmaps", cm(as_admin), "CREATE", false));
    assert!(!message.contains("needs callers verified"), "{message}");
    assert!(allowed.log().contains("anyone who can reach this port can have the webhook log in to Vault as any ServiceAccount"), "{}", allowed.log());
    // A default VAULT_SERVICEACCOUNT without either stops the start.
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = ca_and_cert(dir.path(), "webhook", "IP:127.0.0.1");
    let out = Command::new(webhook_bin())
        .env_clear()
        .env("TLS_CERT_FILE", &cert)
        .env("TLS_PRIVATE_KEY_FILE", &key)
        .env("VAULT_SERVICEACCOUNT", "app")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VAULT_SERVICEACCOUNT: logging in as a ServiceAccount needs callers verified"));
}

/// `vault:auth/token/lookup-self#id` in a ConfigMap wrote the webhook's own token into etcd, and
/// so did `secret/../auth/…`, `%61uth/…`, `./auth/…`, `secret/%2e%2e/auth/…` and
/// `NAMESPACE/auth/…` once the first fix looked at the first segment only. Every spelling, in
/// reads, writes, inline references and templates, and through the `vault-namespace` annotation,
/// is denied naming the key and the reason, dry runs included; the token never comes back.
#[test]
fn object_references_reach_secrets_only_in_any_spelling() {
    let v = vault();
    let token = v.bao.token(&["reader"], "1h");
    v.bao.api("POST", "sys/namespaces/ns1", Some(json!({})));
    let hook = v.webhook(&[("VAULT_TOKEN", &token)]);
    let spellings = [
        ("vault:auth/token/lookup-self#id", "goes through auth/"),
        ("vault:sys/mounts#secret/", "goes through sys/"),
        ("vault:secret/../auth/token/lookup-self#id", "segment"),
        ("vault:%61uth/token/lookup-self#id", "holds '%'"),
        ("vault:./auth/token/lookup-self#id", "segment"),
        ("vault:secret/%2e%2e/auth/token/lookup-self#id", "holds '%'"),
        ("vault:ns1/auth/token/lookup-self#id", "goes through auth/"),
        ("vault:auth//token/lookup-self#id", "empty segment"),
        ("vault:identity/oidc/token/x#token", "goes through identity/"),
        (">>vault:secret/../auth/token/create#client_token", "segment"),
        (">>vault:ns1/auth/token/create#client_token", "goes through auth/"),
        ("id: ${vault:%61uth/token/lookup-self#id}", "holds '%'"),
        ("vault:ns1/auth/token/lookup-self#${.id}", "goes through auth/"),
    ];
    for (value, why) in spellings {
        for dry_run in [false, true] {
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t", "namespace": "shop"}, "data": {"t": value}});
            let message = denied(&hook, "/configmaps", &review("configmaps", object, "CREATE", dry_run));
            assert!(message.contains("configmap shop/t: data[t]: ") && message.contains(why), "{value}: {message}");
            assert!(!message.contains(&token), "{message}");
        }
    }
    // The namespace is part of the path Vault sees.
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "t", "namespace": "shop", "annotations": {format!("{A}vault-namespace"): "ns1/auth"}},
        "data": {"t": "vault:token/lookup-self#id"}});
    let message = denied(&hook, "/configmaps", &review("configmaps", object, "CREATE", false));
    assert!(message.contains("goes through auth/"), "{message}");
    // A secret is still read.
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok", "namespace": "shop"}, "data": {"t": "vault:secret/data/app#password"}});
    assert_eq!(admitted(&hook, "/configmaps", &review("configmaps", object, "CREATE", false))["data"]["t"], "app-only");
}

/// A default install has no client CA, so the webhook cannot tell the API server from any pod
/// that reaches its port: such callers get no secret values unless the operator says the network
/// alone keeps them out. Dry runs and objects without references pass as before.
#[test]
fn unverified_callers_get_no_values_unless_allowed() {
    let v = vault();
    let cm = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"v": value}});
    let open = v.webhook_without_client_ca(&[]);
    let message = denied(&open, "/configmaps", &review("configmaps", cm("vault:secret/data/app#password"), "CREATE", false));
    assert!(message.contains("the webhook returns secret values only to the API server") && message.contains("TLS_CLIENT_CA_FILE"), "{message}");
    let (code, answer) = open.post("/configmaps", &review("configmaps", cm("vault:secret/data/app#password"), "CREATE", true));
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}");
    let (code, answer) = open.post("/configmaps", &review("configmaps", cm("plain"), "CREATE", false));
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}");
    assert!(open.log().contains("TLS_CLIENT_CA_FILE is not set"), "{}", open.log());
    let allowed = v.webhook_without_client_ca(&[("VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS", "true")]);
    assert_eq!(
        admitted(&allowed, "/configmaps", &review("configmaps", cm("vault:secret/data/app#password"), "CREATE", false))["data"]["v"],
        "app-only"
    );

    // With a client CA, a certificate from it that does not name the API server (a kubelet's, a
    // user's) is refused like none at all; TLS_CLIENT_ALLOWED_NAMES decides.
    let hook = v.webhook(&[]);
    let (_, cert, key) = ca_and_cert(hook.dir.path(), "system:node:worker-1", "DNS:worker-1");
    // curl reads a ':' in a certificate's path as a passphrase.
    let (node_cert, node_key) = (hook.dir.path().join("node.crt"), hook.dir.path().join("node.key"));
    std::fs::copy(cert, &node_cert).unwrap();
    std::fs::copy(key, &node_key).unwrap();
    let as_node = Webhook { client: Some((node_cert, node_key)), ..hook };
    let (code, answer) = as_node.post("/configmaps", &review("configmaps", cm("vault:secret/data/app#password"), "CREATE", false));
    assert_eq!(code, 401, "{answer}");
}

/// Each denied read logged in again and left the old token alive (20
/// admissions, 20 tokens); a failed login was tried again for every admission. Now a denied path
/// is just a denial, and a failed login is answered from memory for a few seconds.
#[test]
fn denied_reads_and_failed_logins_leave_no_tokens_behind() {
    let v = vault();
    let before = v.token_count();
    let hook = v.webhook(&[]);
    let cm = |name: &str, value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}, "data": {"v": value}});
    assert_eq!(
        admitted(&hook, "/configmaps", &review("configmaps", cm("ok", "vault:secret/data/app#password"), "CREATE", false))["data"]["v"],
        "app-only"
    );
    for i in 0..10 {
        let message = denied(&hook, "/configmaps", &review("configmaps", cm(&format!("d{i}"), "vault:database/creds/x#password"), "CREATE", false));
        assert!(message.contains("permission denied"), "{message}");
    }
    assert_eq!(v.token_count(), before + 1, "one login, reused: {}", hook.log());
    let metrics = hook.get("/metrics").1;
    assert!(metrics.contains(&format!("vault_webhook_vault_logins_total{{target=\"{}\",outcome=\"ok\"}} 1", v.bao.addr)), "{metrics}");

    // A login that fails (no such role) is not repeated for each admission.
    let broken = v.webhook(&[("VAULT_ROLE", "no-such-role")]);
    for i in 0..5 {
        denied(&broken, "/configmaps", &review("configmaps", cm(&format!("b{i}"), "vault:secret/data/app#password"), "CREATE", false));
    }
    let metrics = broken.get("/metrics").1;
    assert!(metrics.contains(&format!("vault_webhook_vault_logins_total{{target=\"{}\",outcome=\"error\"}} 1", v.bao.addr)), "{metrics}");
}

/// Every distinct object setting used to make a new login and a new live token, kept until
/// shutdown: 30 ConfigMaps differing only in `vault-client-timeout` left 30 tokens, and spellings
/// of the root namespace more. Sessions are keyed by what changes the token, normalised.
#[test]
fn settings_that_do_not_change_the_token_share_one_session() {
    let v = vault();
    let before = v.token_count();
    let mut hook = v.webhook(&[("VAULT_OBJECT_LOGINS", "kubernetes:nosuchrole*")]);
    let cm = |annotations: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop", "annotations": annotations},
               "data": {"v": "vault:secret/data/app#password"}})
    };
    assert_eq!(admitted(&hook, "/configmaps", &review("configmaps", cm(json!({})), "CREATE", false))["data"]["v"], "app-only");
    for i in 11..41 {
        let out =
            admitted(&hook, "/configmaps", &review("configmaps", cm(json!({format!("{A}vault-client-timeout"): format!("{i}s")})), "CREATE", false));
        assert_eq!(out["data"]["v"], "app-only");
    }
    for ns in [" ", "/", "//", "  /"] {
        admitted(&hook, "/configmaps", &review("configmaps", cm(json!({format!("{A}vault-namespace"): ns})), "CREATE", false));
    }
    for spelling in ["kubernetes/", "/kubernetes", " kubernetes "] {
        admitted(&hook, "/configmaps", &review("configmaps", cm(json!({format!("{A}vault-path"): spelling})), "CREATE", false));
    }
    assert_eq!(v.token_count(), before + 1, "one login for all of them: {}", hook.log());
    // Roles that do not exist: failed logins, no token, each remembered for a few seconds.
    for i in 0..5 {
        denied(&hook, "/configmaps", &review("configmaps", cm(json!({format!("{A}vault-role"): format!("nosuchrole{i}")})), "CREATE", false));
    }
    assert_eq!(v.token_count(), before + 1);
    assert!(std::process::Command::new("kill").args(["-TERM", &hook.proc.0.id().to_string()]).status().unwrap().success());
    assert!(busy_wait(Duration::from_secs(10), || hook.exited()), "{}", hook.log());
    assert!(hook.log().contains("revoked_vault_tokens=1"), "{}", hook.log());
    assert_eq!(v.token_count(), before);
}

/// One small ConfigMap of many templates over one path rendered a 160 MB answer and 620 MB of
/// memory (120 keys); three at once ended the webhook. The values of one object are bounded, so
/// many such reviews at once stay far inside the chart's 128 MiB limit.
#[test]
fn many_large_templates_in_one_object_are_denied_within_bounded_memory() {
    let v = vault();
    v.bao.kv2("bomb", json!({"a": "aaaaaaaaaa"}));
    let hook = v.webhook(&[]);
    let template = r#"vault:secret/data/bomb#${.a | replace "a" "aaaaaaaaaa" | replace "a" "aaaaaaaaaa" | replace "a" "aaaaaaaaaa" | replace "a" "aaaaaaaaaa" | replace "a" "aaaaaaaaaa"}"#;
    let data: serde_json::Map<String, Value> = (0..120).map(|i| (format!("k{i}"), json!(template))).collect();
    let bomb = review(
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "shop"}, "data": data}),
        "CREATE",
        false,
    );
    let messages: Vec<String> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..16).map(|_| s.spawn(|| denied(&hook, "/configmaps", &bomb))).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for message in &messages {
        assert!(message.contains("the resolved values would exceed 1048576 bytes in all"), "{message}");
    }
    let peak_kib = hook.peak_rss_kib();
    println!("webhook peak RSS after 16 concurrent 120-template reviews: {} MiB", peak_kib / 1024);
    assert!(peak_kib < 128 * 1024, "peak RSS {peak_kib} KiB is over the chart's 128 MiB limit");
    assert_eq!(hook.get("/healthz").0, 200);
}

/// A `.dockerconfigjson` auth of the form `user:vault:PATH#KEY` (a plain user, the password from
/// Vault) was never resolved although the README promised it.
#[test]
fn docker_auth_with_a_plain_user_and_a_vault_password() {
    let v = vault();
    let hook = v.webhook(&[]);
    let config = json!({"auths": {"registry.example.com": {"auth": b64("ci-bot:vault:secret/data/dockerrepo#DOCKER_REPO_PASSWORD")}}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": "shop"}, "data": {".dockerconfigjson": b64(&config.to_string())}});
    let out = admitted(&hook, "/secrets", &review("secrets", secret, "CREATE", false));
    assert_eq!(unb64(&registry_entry(&out, "registry.example.com")["auth"]), "ci-bot:dockerrepopassword");
}
