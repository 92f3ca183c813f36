//! vault-env's cloud login methods (Bank-Vaults' `aws-iam`, `aws-ec2`, `gcp-gce`, `gcp-iam`,
//! `azure`, and our `cert`), against the real OpenBao wherever it can check them:
//! - GCP and Azure: the fixture metadata services (tests/fixtures/cloud_metadata.py) sign identity
//!   tokens with a key whose public half OpenBao's jwt method holds, mounted at `gcp` and `azure`,
//!   so the login payloads Vault's gcp and azure methods take are verified for real.
//! - AWS: OpenBao has no aws method, so tests/fixtures/aws.py stands in front of it for
//!   `auth/aws/login`: botocore checks the embedded `sts:GetCallerIdentity` signature (credentials
//!   from the fixture's IMDS), or the PKCS#7 document; a real OpenBao token comes back.
//! - cert: OpenBao's cert method over its TLS listener.
//!
//! And the webhook's registry credentials from its own cloud identity, for GCR/Artifact Registry
//! and ACR images without a pull secret, through a CONNECT proxy to local registries named like
//! the clouds' (ECR's are in webhook.rs).

use crate::common::*;
use serde_json::json;
use std::path::Path;

/// OpenBao with `secret/data/app` readable under policy `app`.
fn vault_with_the_secret() -> Bao {
    let bao = Bao::dev();
    bao.kv2("app", json!({"password": "from-the-cloud"}));
    bao.policy("app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    bao
}

/// vault-env with `env`, printing the resolved `PASSWORD`.
fn resolve(env: &[(&str, &str)]) -> Output {
    let mut all = vec![("PASSWORD", "vault:secret/data/app#password"), ("VAULT_ROLE", "app")];
    all.extend_from_slice(env);
    vault_env(&all, &["sh", "-c", "echo \"$PASSWORD\""])
}

struct Metadata {
    _proc: Proc,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    url: String,
    public_key: String,
}

impl Metadata {
    fn start() -> Metadata {
        let dir = tempfile::tempdir().unwrap();
        let (key, public_key) = jwt_keypair(dir.path());
        let (proc, port) =
            python_fixture("cloud_metadata.py", &[dir.path().to_str().unwrap(), key.to_str().unwrap()], &dir.path().join("cloud.port"));
        Metadata { _proc: proc, dir, url: format!("http://127.0.0.1:{port}"), public_key }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cloud.log")).unwrap_or_default()
    }

    /// OpenBao's jwt method at `mount`, trusting this fixture's tokens, with role `app` for
    /// `audiences`.
    fn trust(&self, bao: &Bao, mount: &str, audiences: &[&str]) {
        bao.enable_auth(mount, "jwt");
        bao.api("POST", &format!("auth/{mount}/config"), Some(json!({"jwt_validation_pubkeys": [self.public_key]})));
        bao.api(
            "POST",
            &format!("auth/{mount}/role/app"),
            Some(json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": audiences, "token_policies": ["app"], "token_ttl": "10m"})),
        );
    }
}

#[test]
fn gcp_gce_and_gcp_iam_logins_are_verified_by_openbao() {
    let bao = vault_with_the_secret();
    let metadata = Metadata::start();
    metadata.trust(&bao, "gcp", &["http://vault/app", "vault/app"]);
    let host = metadata.url.trim_start_matches("http://");
    let out = resolve(&[("VAULT_ADDR", &bao.addr), ("VAULT_AUTH_METHOD", "gcp-gce"), ("GCE_METADATA_HOST", host)]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "from-the-cloud"), "{}", out.all());
    assert!(out.stderr.contains("logged in"), "{}", out.stderr);
    assert!(metadata.log().contains(r#"identity {"audience": "http://vault/app", "format": "full"}"#), "{}", metadata.log());

    // gcp-iam: the default service account's email and token, then signJwt for vault/app.
    let out = resolve(&[
        ("VAULT_ADDR", &bao.addr),
        ("VAULT_AUTH_METHOD", "gcp-iam"),
        ("GCE_METADATA_HOST", host),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS", &metadata.url),
    ]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "from-the-cloud"), "{}", out.all());
    assert!(metadata.log().contains(r#"iam signJwt {"aud": "vault/app", "sub": "app@project-1.iam.gserviceaccount.com"}"#), "{}", metadata.log());
    assert!(!out.all().contains("ya29"), "no access token in the output: {}", out.all());

    // A role the identity is not bound to: Vault's answer, naming mount and role.
    let out = resolve(&[("VAULT_ADDR", &bao.addr), ("VAULT_AUTH_METHOD", "gcp-gce"), ("GCE_METADATA_HOST", host), ("VAULT_ROLE", "other")]);
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("auth/gcp/login") && out.stderr.contains("\"other\""), "{}", out.stderr);
}

#[test]
fn azure_login_is_verified_by_openbao_with_the_instance_placement() {
    let bao = vault_with_the_secret();
    let metadata = Metadata::start();
    metadata.trust(&bao, "azure", &["https://management.azure.com/"]);
    // The aws.py front logs each login's fields on their way to OpenBao.
    let front = AwsFront::start(&bao);
    let out = resolve(&[("VAULT_ADDR", &front.url), ("VAULT_AUTH_METHOD", "azure"), ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &metadata.url)]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "from-the-cloud"), "{}", out.all());
    assert!(
        front.log().contains(
            r#"login /v1/auth/azure/login {"jwt": "***", "resource_group_name": "rg-apps", "role": "app", "subscription_id": "sub-0001", "vm_name": "vm-apps-1"}"#
        ),
        "{}",
        front.log()
    );
    assert!(
        metadata
            .log()
            .contains(r#"azure /metadata/identity/oauth2/token {"api-version": "2018-02-01", "resource": "https://management.azure.com/"}"#)
    );
}

/// AWS's fixture services in front of OpenBao: IMDS and `auth/aws/login`.
struct AwsFront {
    _proc: Proc,
    dir: tempfile::TempDir,
    url: String,
}

impl AwsFront {
    fn start(bao: &Bao) -> AwsFront {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let (proc, port) = python_fixture("aws.py", &[d, "unused", &bao.addr, "root"], &dir.path().join("aws.port"));
        AwsFront { _proc: proc, dir, url: format!("http://127.0.0.1:{port}") }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aws.log")).unwrap_or_default()
    }
}

#[test]
fn aws_iam_login_signs_get_caller_identity_with_the_instance_role() {
    let bao = vault_with_the_secret();
    let aws = AwsFront::start(&bao);
    let base = [("VAULT_ADDR", aws.url.as_str()), ("VAULT_AUTH_METHOD", "aws-iam"), ("VAULT_AWS_IAM_SERVER_ID", "vault.example.com")];
    let mut env = base.to_vec();
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", &aws.url));
    let out = resolve(&env);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "from-the-cloud"), "{}\n{}", out.all(), aws.log());
    assert!(aws.log().contains("aws-login iam signature-ok ASIAIMDSKEY https://sts.amazonaws.com/ us-east-1"), "{}", aws.log());
    assert!(!out.all().contains("imds/secret") && !out.all().contains("imds-session-token"), "{}", out.all());

    // Keys that do not sign what the fixture expects: Vault's refusal, no secret in the error.
    let mut env = base.to_vec();
    env.extend([("AWS_ACCESS_KEY_ID", "ASIAIMDSKEY"), ("AWS_SECRET_ACCESS_KEY", "not/the+right+secret"), ("AWS_REGION", "eu-west-1")]);
    let out = resolve(&env);
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("auth/aws/login") && out.stderr.contains("SignatureDoesNotMatch"), "{}", out.stderr);
    assert!(!out.all().contains("not/the+right+secret"), "{}", out.all());
}

#[test]
fn aws_ec2_login_sends_the_identity_document_with_bank_vaults_nonce() {
    let bao = vault_with_the_secret();
    let aws = AwsFront::start(&bao);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token\n").unwrap();
    let out = resolve(&[
        ("VAULT_ADDR", &aws.url),
        ("VAULT_AUTH_METHOD", "aws-ec2"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &aws.url),
        ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", token.to_str().unwrap()),
    ]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "from-the-cloud"), "{}\n{}", out.all(), aws.log());
    // hex(sha256("token")), as Bank-Vaults computes it from the service-account token.
    assert!(aws.log().contains("aws-login ec2 pkcs7-ok nonce=3c469e9d6c5875d37a43f353d4f88e61fcf812c66eee3457465a40b0da4153e0"), "{}", aws.log());
}

/// No metadata server: a clear error naming the method and the service, within the client timeout.
#[test]
fn a_missing_metadata_server_is_a_clear_error_in_time() {
    let bao = vault_with_the_secret();
    let closed = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token\n").unwrap();
    let started = std::time::Instant::now();
    for (method, var, value) in [
        ("gcp-gce", "GCE_METADATA_HOST", closed.clone()),
        ("azure", "AZURE_POD_IDENTITY_AUTHORITY_HOST", format!("http://{closed}")),
        ("aws-ec2", "AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://{closed}")),
        ("aws-iam", "AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://{closed}")),
    ] {
        let out = resolve(&[
            ("VAULT_ADDR", &bao.addr),
            ("VAULT_AUTH_METHOD", method),
            (var, &value),
            ("VAULT_CLIENT_TIMEOUT", "2s"),
            ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", token.to_str().unwrap()),
        ]);
        assert_eq!(out.code, Some(69), "{method}: {}", out.all());
        assert!(out.stderr.contains(&format!("VAULT_AUTH_METHOD={method}")) && out.stderr.contains(&closed), "{method}: {}", out.stderr);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
}

/// A metadata service that answers and refuses (here Azure's IMDS for an identity the VM does not
/// have) is a credential problem, exit 77, not an unreachable service (69): every cloud failure
/// used to be 69.
#[test]
fn a_refused_cloud_identity_is_exit_77() {
    let bao = vault_with_the_secret();
    let metadata = Metadata::start();
    let out = resolve(&[
        ("VAULT_ADDR", &bao.addr),
        ("VAULT_AUTH_METHOD", "azure"),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &metadata.url),
        ("AZURE_CLIENT_ID", "not-this-vms-identity"),
    ]);
    assert_eq!(out.code, Some(77), "{}", out.all());
    assert!(out.stderr.contains("VAULT_AUTH_METHOD=azure") && out.stderr.contains("Identity not found"), "{}", out.stderr);
}

/// `cert` (ours): OpenBao's cert method with the client certificate vault-env presents.
#[test]
fn cert_login_with_the_client_certificate() {
    let bao = Bao::dev_tls();
    bao.kv2("app", json!({"password": "from-the-cloud"}));
    bao.policy("app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_cert(dir.path(), "client", "DNS:client");
    bao.enable_auth("cert", "cert");
    let pem = std::fs::read_to_string(&ca).unwrap();
    bao.api("POST", "auth/cert/certs/app", Some(json!({"certificate": pem, "token_policies": ["app"], "token_ttl": "10m"})));
    let bao_ca = bao.ca.as_deref().map(Path::to_str).unwrap().unwrap();
    let tls = [
        ("VAULT_ADDR", bao.addr.as_str()),
        ("VAULT_CACERT", bao_ca),
        ("VAULT_AUTH_METHOD", "cert"),
        ("VAULT_CLIENT_CERT", cert.to_str().unwrap()),
        ("VAULT_CLIENT_KEY", key.to_str().unwrap()),
    ];
    let out = resolve(&tls);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "from-the-cloud"), "{}", out.all());
    // Without a client certificate OpenBao refuses, and the error names the mount.
    let out = resolve(&tls[..3]);
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("auth/cert/login"), "{}", out.stderr);
}

/// The webhook, reaching registries named like a cloud's through a CONNECT proxy that sends
/// `routes` (host suffix, local address) to local servers; `env` on top.
struct CloudWebhook {
    hook: Webhook,
    _api: KubeApi,
    _proxy: Proc,
    _dir: tempfile::TempDir,
}

impl CloudWebhook {
    fn start(routes: &[(&str, &str)], env: &[(&str, &str)]) -> CloudWebhook {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![dir.path().to_str().unwrap()];
        for (suffix, target) in routes {
            args.extend([*suffix, *target]);
        }
        let (proxy, port) = python_fixture("connect_proxy.py", &args, &dir.path().join("proxy.port"));
        let api = KubeApi::start();
        let (kubeconfig, proxy_url) = (api.kubeconfig.display().to_string(), format!("http://127.0.0.1:{port}"));
        let mut all = vec![("KUBECONFIG", kubeconfig.as_str()), ("HTTPS_PROXY", proxy_url.as_str()), ("REGISTRY_SKIP_VERIFY", "true")];
        all.extend_from_slice(env);
        CloudWebhook { hook: Webhook::start(&all), _api: api, _proxy: proxy, _dir: dir }
    }

    fn args_of(&self, images: &[&str]) -> Result<Vec<Vec<String>>, String> {
        crate::webhook::args_of(&self.hook, crate::webhook::commandless_pod(images, json!({}), json!({})))
    }
}

const GOOGLE_TOKEN: &str = "ya29.fixture-access-token";

/// GCR and Artifact Registry images without a pull secret: a Google access token of the webhook's
/// identity (GKE metadata server, or a service-account key file) as `_token`.
#[test]
fn gcr_and_artifact_registry_images_with_the_webhooks_google_identity() {
    let metadata = Metadata::start();
    let registry = Registry::secure("_token", GOOGLE_TOKEN);
    registry.push("project-1/app", "1", "oci");
    let routes = [(".gcr.io", registry.host.as_str()), (".pkg.dev", registry.host.as_str())];
    let images = ["eu.gcr.io/project-1/app:1", "europe-docker.pkg.dev/project-1/app:1"];
    let host = metadata.url.trim_start_matches("http://").to_string();
    let gke = CloudWebhook::start(&routes, &[("GCE_METADATA_HOST", &host)]);
    assert_eq!(gke.args_of(&images).unwrap(), [["/bin/app", "--flag"], ["/bin/app", "--flag"]]);
    let log = metadata.log();
    assert_eq!(log.matches("gcp /computeMetadata/v1/instance/service-accounts/default/token").count(), 1, "one token for both: {log}");
    let metrics = gke.hook.get("/metrics").1;
    assert!(metrics.contains(r#"vault_webhook_gcp_tokens_total{target="eu.gcr.io",outcome="ok"} 1"#), "{metrics}");

    // REGISTRY_CLOUD_IDENTITY=false: the webhook's identity is never used for a pod's lookup
    // (a pod author cannot read a private image's command through it); the registry refuses.
    let own_secrets_only = CloudWebhook::start(&routes, &[("GCE_METADATA_HOST", &host), ("REGISTRY_CLOUD_IDENTITY", "false")]);
    let error = own_secrets_only.args_of(&images[..1]).unwrap_err();
    assert!(error.contains("eu.gcr.io/project-1/app:1"), "{error}");
    assert_eq!(metadata.log().matches("service-accounts/default/token").count(), 1, "no new token: {}", metadata.log());

    // A service-account key file (GOOGLE_APPLICATION_CREDENTIALS): its signed assertion, then the token.
    let key_pem = std::fs::read_to_string(metadata.dir.path().join("sa.key")).unwrap();
    let key_file = |pem: &str| {
        let file = metadata.dir.path().join(format!("key-{}.json", pem.len()));
        let key = json!({"type": "service_account", "client_email": "webhook@project-1.iam.gserviceaccount.com", "private_key": pem,
                         "token_uri": format!("{}/token", metadata.url)});
        std::fs::write(&file, key.to_string()).unwrap();
        file.display().to_string()
    };
    let with_key = CloudWebhook::start(&routes, &[("GOOGLE_APPLICATION_CREDENTIALS", &key_file(&key_pem))]);
    assert_eq!(with_key.args_of(&images[..1]).unwrap(), [["/bin/app", "--flag"]]);
    let expected = r#"google token {"iss": "webhook@project-1.iam.gserviceaccount.com", "scope": "https://www.googleapis.com/auth/cloud-platform"}"#;
    assert!(metadata.log().contains(expected), "{}", metadata.log());

    // Another key: Google refuses the assertion, and the denial names image and reason.
    let other_dir = metadata.dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let (other_key, _) = jwt_keypair(&other_dir);
    let other_key = std::fs::read_to_string(other_key).unwrap();
    let refused = CloudWebhook::start(&routes, &[("GOOGLE_APPLICATION_CREDENTIALS", &key_file(&other_key))]);
    let error = refused.args_of(&images[..1]).unwrap_err();
    assert!(error.contains("eu.gcr.io/project-1/app:1") && error.contains("Invalid JWT Signature"), "{error}");
    assert!(!error.contains("PRIVATE KEY") && !error.contains(GOOGLE_TOKEN), "{error}");
}

const ACR: &str = "myregistry.azurecr.io";
const ACR_OTHER: &str = "other.azurecr.io";
const ACR_REFRESH: &str = "acr-refresh-token-1";

/// ACR images without a pull secret: an Entra ID token of the webhook's identity (client secret or
/// managed identity), exchanged at the registry's /oauth2/exchange for a refresh token.
#[test]
fn acr_images_with_the_webhooks_azure_identity() {
    let metadata = Metadata::start();
    let registry = Registry::secure("00000000-0000-0000-0000-000000000000", ACR_REFRESH);
    registry.push("team/app", "1", "oci");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_cert(dir.path(), "acr", &format!("DNS:{ACR},DNS:{ACR_OTHER}"));
    let d = dir.path().to_str().unwrap();
    let (_front, port) = python_fixture(
        "acr_front.py",
        &[d, cert.to_str().unwrap(), key.to_str().unwrap(), &registry.base, ACR_REFRESH],
        &dir.path().join("acr.port"),
    );
    let front = format!("127.0.0.1:{port}");
    let routes = [(".azurecr.io", front.as_str())];
    let image = format!("{ACR}/team/app:1");
    let ca = ca.display().to_string();
    let client = |secret: &str| {
        let env = [
            ("SSL_CERT_FILE", ca.as_str()),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", secret),
            ("AZURE_AUTHORITY_HOST", metadata.url.as_str()),
        ];
        CloudWebhook::start(&routes, &env)
    };
    let hook = client("client-s3cret");
    assert_eq!(hook.args_of(&[&image]).unwrap(), [["/bin/app", "--flag"]]);
    let log = std::fs::read_to_string(dir.path().join("acr.log")).unwrap();
    assert!(log.contains(&format!("exchange {ACR} tenant=tenant-1")), "{log}");
    assert!(metadata.log().contains("entra token secret https://management.azure.com/.default"), "{}", metadata.log());
    let metrics = hook.hook.get("/metrics").1;
    assert!(metrics.contains(&format!(r#"vault_webhook_acr_tokens_total{{target="{ACR}",outcome="ok"}} 1"#)), "{metrics}");
    // Another ACR registry: its own exchange, but the same Entra ID token (one identity).
    assert_eq!(hook.args_of(&[&format!("{ACR_OTHER}/team/app:1")]).unwrap(), [["/bin/app", "--flag"]]);
    assert!(std::fs::read_to_string(dir.path().join("acr.log")).unwrap().contains(&format!("exchange {ACR_OTHER} tenant=tenant-1")));
    assert_eq!(metadata.log().matches("entra token secret").count(), 1, "{}", metadata.log());

    // The managed identity (IMDS), as on an AKS node.
    let imds = CloudWebhook::start(&routes, &[("SSL_CERT_FILE", &ca), ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &metadata.url)]);
    assert_eq!(imds.args_of(&[&image]).unwrap(), [["/bin/app", "--flag"]]);
    assert!(std::fs::read_to_string(dir.path().join("acr.log")).unwrap().contains(&format!("exchange {ACR} tenant=None")));

    // A wrong secret: Entra ID's reason in the denial, and no secret.
    let error = client("wrong-s3cret").args_of(&[&image]).unwrap_err();
    assert!(error.contains(&image) && error.contains("AADSTS7000215"), "{error}");
    assert!(!error.contains("wrong-s3cret") && !error.contains(ACR_REFRESH), "{error}");
}
