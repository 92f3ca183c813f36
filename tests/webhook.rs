//! vault-secrets-webhook as the API server uses it: real AdmissionReview JSON POSTed over HTTPS
//! (with `?timeout=10s`), the returned JSONPatch applied to the object, the result read back as a
//! k8s-openapi Pod. Kubernetes reads go to a fixture server answering the real API paths; image
//! lookups go to Debian's docker-registry with images pushed by the test.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn webhook_bin() -> PathBuf {
    let path = path_from_env("VAULT_SECRETS_WEBHOOK_BIN").unwrap_or_else(|| vault_env_bin().with_file_name("vault-secrets-webhook"));
    assert!(path.exists(), "{} is missing: build it first with `cargo build -p vault-env-webhook` (scripts/test.sh does)", path.display());
    path
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Kills and reaps the process when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Webhook {
    pub proc: Proc,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
}

impl Webhook {
    pub fn start(env: &[(&str, &str)]) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = ca_and_cert(dir.path(), "webhook", "IP:127.0.0.1,DNS:localhost");
        Webhook::launch(dir, ca, &cert, &key, env)
    }

    /// Starts the webhook serving `cert`/`key`, which `ca` verifies.
    pub fn launch(dir: tempfile::TempDir, ca: PathBuf, cert: &Path, key: &Path, env: &[(&str, &str)]) -> Webhook {
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("webhook.log")).unwrap();
        let mut cmd = Command::new(webhook_bin());
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LISTEN_ADDRESS", format!("127.0.0.1:{port}"))
            .env("TLS_CERT_FILE", cert)
            .env("TLS_PRIVATE_KEY_FILE", key)
            .env("TLS_RELOAD_INTERVAL", "200ms")
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .env("LOG_LEVEL", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let proc = Proc(cmd.spawn().expect("start the webhook"));
        let mut hook = Webhook { proc, url: format!("https://127.0.0.1:{port}"), dir, ca };
        let ready = busy_wait(Duration::from_secs(20), || hook.exited() || hook.get("/healthz").0 == 200);
        assert!(ready && !hook.exited(), "the webhook did not start: {}", hook.log());
        hook
    }

    fn exited(&mut self) -> bool {
        matches!(self.proc.0.try_wait(), Ok(Some(_)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook.log")).unwrap_or_default()
    }

    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.curl(&[&format!("{}{path}", self.url)])
    }

    /// POSTs `body` as the API server does; returns the status and the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let file = self.dir.path().join(format!("review-{}.json", fastrand::u64(..)));
        std::fs::write(&file, body.to_string()).unwrap();
        let (code, text) = self.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{}{path}?timeout=10s", self.url),
        ]);
        (code, serde_json::from_str(&text).unwrap_or_else(|_| panic!("HTTP {code}, not JSON: {text}")))
    }
}

/// The patch of a review answer applied to the review's object (`None` when there is no patch).
pub fn apply(review: &Value, answer: &Value) -> Option<Value> {
    let response = &answer["response"];
    assert_eq!(response["uid"], review["request"]["uid"], "the answer echoes the uid");
    assert_eq!(answer["apiVersion"], review["apiVersion"]);
    assert_eq!(answer["kind"], "AdmissionReview");
    let patch = response.get("patch")?.as_str().expect("patch is a base64 string");
    assert_eq!(response["patchType"], "JSONPatch");
    let patch: json_patch::Patch = serde_json::from_slice(&STANDARD.decode(patch).unwrap()).expect("an RFC 6902 patch");
    let mut doc = review["request"]["object"].clone();
    json_patch::patch(&mut doc, &patch).expect("the patch applies to the object");
    Some(doc)
}

pub fn as_pod(doc: &Value) -> Pod {
    serde_json::from_value(doc.clone()).expect("the patched object is a valid Pod")
}

pub fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn review_of(pod: Value) -> Value {
    let mut review = fixture("pod-create-review.json");
    review["request"]["object"] = pod;
    review["request"]["uid"] = json!(format!("uid-{}", fastrand::u64(..)));
    review
}

fn env_value(pod: &Pod, container: usize, name: &str) -> Option<String> {
    let c = &pod.spec.as_ref().unwrap().containers[container];
    c.env.iter().flatten().rev().find(|e| e.name == name).and_then(|e| e.value.clone())
}

fn pod_with(containers: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "app-", "namespace": "shop", "annotations": annotations},
        "spec": {"serviceAccountName": "app", "containers": containers}})
}

#[test]
fn pod_review_over_https_daemon_toggle_and_idempotent() {
    let hook = Webhook::start(&[("VAULT_ADDR", "https://vault.vault:8200")]);
    let review = fixture("pod-create-review.json");
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let doc = apply(&review, &answer).expect("a patch");
    let pod = as_pod(&doc);
    let spec = pod.spec.as_ref().unwrap();
    let app = &spec.containers[0];
    assert_eq!(app.command.as_deref(), Some(&["/vault/vault-env".to_string()][..]));
    assert_eq!(app.args.as_deref(), Some(&["/app/server".to_string(), "--port=8080".to_string()][..]));
    assert_eq!(env_value(&pod, 0, "VAULT_ENV_DAEMON").as_deref(), Some("true"), "vault-env-daemon annotation");
    assert_eq!(env_value(&pod, 0, "VAULT_ADDR").as_deref(), Some("https://vault.vault:8200"));
    assert_eq!(env_value(&pod, 0, "VAULT_ROLE").as_deref(), Some("app"), "role defaults to the ServiceAccount");
    assert_eq!(env_value(&pod, 0, "DB_PASSWORD").as_deref(), Some("vault:secret/data/myapp#DB_PASSWORD"), "values untouched");
    // The sidecar without references is left alone.
    assert_eq!(spec.containers[1].command.as_deref(), Some(&["/bin/proxy".to_string()][..]));
    assert!(spec.containers[1].env.iter().flatten().all(|e| !e.name.starts_with("VAULT_")));
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "copy-vault-env");
    assert_eq!(init.command.as_deref().unwrap(), ["/usr/local/bin/vault-env", "--copy-to", "/vault/"]);
    let sc = init.security_context.as_ref().unwrap();
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let volumes = spec.volumes.as_ref().unwrap();
    assert!(volumes.iter().any(|v| v.name.starts_with("kube-api-access-")), "existing volumes kept");
    let vault_env = volumes.iter().find(|v| v.name == "vault-env").unwrap();
    assert_eq!(vault_env.empty_dir.as_ref().unwrap().medium.as_deref(), Some("Memory"));
    assert!(spec.tolerations.as_ref().is_some_and(|t| t.len() == 2), "unrelated fields untouched");

    // A second pass (reinvocation) over the mutated pod changes nothing.
    let again = review_of(doc);
    let (code, answer) = hook.post("/pods", &again);
    assert_eq!((code, answer["response"]["allowed"].clone()), (200, json!(true)));
    assert_eq!(apply(&again, &answer), None, "no patch the second time");
}

#[test]
fn dry_run_v1beta1_and_pods_without_volumes() {
    let hook = Webhook::start(&[]);
    let review = fixture("pod-dryrun-review.json");
    assert!(review["request"]["object"]["spec"].get("volumes").is_none());
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!(code, 200, "{answer}");
    let pod = as_pod(&apply(&review, &answer).expect("a patch"));
    assert_eq!(pod.spec.unwrap().volumes.unwrap()[0].name, "vault-env");

    let mut beta = fixture("pod-create-review.json");
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (code, answer) = hook.post("/pods", &beta);
    assert_eq!(code, 200);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1", "answered in kind");
    as_pod(&apply(&beta, &answer).expect("a patch"));
}

#[test]
fn errors_bad_input_health_and_metrics() {
    let hook = Webhook::start(&[]);
    assert_eq!(hook.get("/healthz"), (200, "ok".into()));
    // Malformed bodies: 400 with a message, and the server carries on.
    for body in [json!("text"), json!({"apiVersion": "v1", "kind": "Pod"}), json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})] {
        let (code, answer) = hook.post("/pods", &body);
        assert_eq!(code, 400, "{answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    // A bad annotation: denied, naming pod and annotation.
    let pod = pod_with(
        json!([{"name": "app", "image": "app:1", "command": ["app"], "env": [{"name": "A", "value": "vault:secret/data/a#b"}]}]),
        json!({"vault.security.banzaicloud.io/vault-client-timeout": "soon"}),
    );
    let (code, answer) = hook.post("/pods", &review_of(pod));
    assert_eq!((code, answer["response"]["allowed"].clone()), (200, json!(false)), "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("shop/app-*") && message.contains("vault.security.banzaicloud.io/vault-client-timeout"), "{message}");

    let (code, metrics) = hook.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            r#"vault_webhook_review_duration_seconds_count{kind="Pod",operation="CREATE",dry_run="false",mutated="false",outcome="denied"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"outcome="invalid"} 3"#), "{metrics}");
    assert!(hook.get("/nope").0 == 404);
    assert!(!hook.log().contains("vault:secret/data/a#b"), "env values are never logged");
}

#[test]
fn refuses_to_start_without_a_certificate() {
    let out = run_with_timeout(
        {
            let mut c = Command::new(webhook_bin());
            c.env_clear().env("LISTEN_ADDRESS", "127.0.0.1:0").env("VAULT_SKIP_VERIFY", "maybe");
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(64), "{}", out.all());
    assert!(out.stderr.contains("TLS_CERT_FILE/TLS_PRIVATE_KEY_FILE") && out.stderr.contains("VAULT_SKIP_VERIFY"), "{}", out.stderr);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let bad = dir.path().join("bad.pem");
    let out = run_with_timeout(
        {
            let mut c = Command::new(webhook_bin());
            c.env_clear().env("LISTEN_ADDRESS", "127.0.0.1:0").env("TLS_CERT_FILE", &bad).env("TLS_PRIVATE_KEY_FILE", &bad);
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("cannot load the serving certificate") && out.stderr.contains("bad.pem"), "{}", out.stderr);
}

fn served_fingerprint(hook: &Webhook) -> String {
    let port = hook.url.rsplit(':').next().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Kubernetes secret volumes swap a `..data` symlink; the new pair is served without a restart,
/// and a broken pair is ignored (the old certificate stays).
#[test]
fn certificate_reload_through_a_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = ca_and_cert(dir.path(), "first", "IP:127.0.0.1");
    ca_and_cert(dir.path(), "second", "IP:127.0.0.1");
    let volume = dir.path().join("volume");
    let data1 = volume.join("..2026_1");
    std::fs::create_dir_all(&data1).unwrap();
    std::fs::copy(dir.path().join("first.crt"), data1.join("tls.crt")).unwrap();
    std::fs::copy(dir.path().join("first.key"), data1.join("tls.key")).unwrap();
    std::os::unix::fs::symlink("..2026_1", volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", volume.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", volume.join("tls.key")).unwrap();
    let hook = Webhook::launch(tempfile::tempdir().unwrap(), ca, &volume.join("tls.crt"), &volume.join("tls.key"), &[]);
    let first = served_fingerprint(&hook);
    assert!(first.contains("Fingerprint"), "{first}");

    let swap = |name: &str, cert: &[u8], key: &[u8]| {
        let data = volume.join(name);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("tls.crt"), cert).unwrap();
        std::fs::write(data.join("tls.key"), key).unwrap();
        let tmp = volume.join("..data_tmp");
        std::os::unix::fs::symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, volume.join("..data")).unwrap();
    };
    // A broken pair: the old certificate stays, the server keeps answering.
    swap("..2026_2", b"garbage", b"garbage");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(served_fingerprint(&hook), first);
    assert_eq!(hook.get("/healthz").0, 200);
    assert!(hook.log().contains("keeping the old one"), "{}", hook.log());

    let second_cert = std::fs::read(dir.path().join("second.crt")).unwrap();
    let second_key = std::fs::read(dir.path().join("second.key")).unwrap();
    swap("..2026_3", &second_cert, &second_key);
    assert!(busy_wait(Duration::from_secs(10), || served_fingerprint(&hook) != first), "the new certificate is not served");
    assert_eq!(hook.get("/healthz").0, 200);
}

/// A Kubernetes API stand-in: real paths, real JSON (tests/fixtures/kube_api.py).
pub struct KubeApi {
    _proc: Proc,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl KubeApi {
    pub fn start() -> KubeApi {
        let dir = tempfile::tempdir().unwrap();
        let portfile = dir.path().join("port");
        let proc = Proc(
            Command::new("python3").arg(fixtures().join("kube_api.py")).arg(dir.path()).arg(&portfile).stdin(Stdio::null()).spawn().expect("python3"),
        );
        assert!(busy_wait(Duration::from_secs(10), || portfile.exists()), "the fixture API did not start");
        let port = std::fs::read_to_string(&portfile).unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\nusers:\n- name: test\n  user:\n    token: test-token\n"
            ),
        )
        .unwrap();
        KubeApi { _proc: proc, dir, kubeconfig }
    }

    pub fn put(&self, namespace: &str, resource: &str, name: &str, object: Value) {
        let dir = self.dir.path().join(namespace).join(resource);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), object.to_string()).unwrap();
    }

    pub fn secret(&self, namespace: &str, name: &str, kind: &str, data: &[(&str, &[u8])]) {
        let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(STANDARD.encode(v)))).collect();
        self.put(
            namespace,
            "secrets",
            name,
            json!({"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": name, "namespace": namespace}, "data": data}),
        );
    }

    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

#[test]
fn value_from_secrets_and_config_maps_read_through_the_api() {
    let api = KubeApi::start();
    api.secret("shop", "db", "Opaque", &[("password", b"vault:secret/data/db#password"), ("user", b"app")]);
    api.put(
        "shop",
        "configmaps",
        "settings",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "shop"}, "data": {"URL": "mysql://${vault:secret/data/db#user}@db"}}),
    );
    let kubeconfig = api.kubeconfig.display().to_string();
    let hook = Webhook::start(&[("KUBECONFIG", &kubeconfig)]);
    let pod = pod_with(
        json!([
            {"name": "by-key", "image": "a:1", "command": ["a"], "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]},
            {"name": "plain-key", "image": "b:1", "command": ["b"], "env": [{"name": "U", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}}]},
            {"name": "env-from", "image": "c:1", "command": ["c"], "envFrom": [{"configMapRef": {"name": "settings"}}]},
            {"name": "missing", "image": "d:1", "command": ["d"], "envFrom": [{"secretRef": {"name": "gone"}}]},
        ]),
        json!({}),
    );
    let review = review_of(pod);
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!(code, 200, "{answer}");
    let pod = as_pod(&apply(&review, &answer).expect("a patch"));
    let mutated: Vec<bool> =
        pod.spec.unwrap().containers.iter().map(|c| c.command.as_deref() == Some(&["/vault/vault-env".to_string()][..])).collect();
    assert_eq!(mutated, [true, false, true, false]);
    let requests = api.requests();
    for path in ["/api/v1/namespaces/shop/secrets/db", "/api/v1/namespaces/shop/configmaps/settings", "/api/v1/namespaces/shop/secrets/gone"] {
        assert!(requests.iter().any(|r| r == path), "{path} not in {requests:?}");
    }
    assert!(hook.get("/metrics").1.contains(r#"vault_webhook_kubernetes_api_requests_total{target="secrets",outcome="not_found"} 1"#));
}

#[test]
fn pods_needing_no_read_work_without_an_api_server() {
    // KUBECONFIG points at nothing: pods with direct references are still mutated...
    let hook = Webhook::start(&[]);
    let direct =
        review_of(pod_with(json!([{"name": "a", "image": "a:1", "command": ["a"], "env": [{"name": "X", "value": "vault:s/data/x#y"}]}]), json!({})));
    let (_, answer) = hook.post("/pods", &direct);
    as_pod(&apply(&direct, &answer).expect("a patch"));
    // ...and a pod that needs a read is denied with the reason.
    let indirect =
        review_of(pod_with(json!([{"name": "a", "image": "a:1", "command": ["a"], "envFrom": [{"secretRef": {"name": "db"}}]}]), json!({})));
    let (_, answer) = hook.post("/pods", &indirect);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("container a") && message.contains("Kubernetes API"), "{message}");
}

/// Debian's docker-registry (CNCF distribution) on a free loopback port.
pub struct Registry {
    _procs: Vec<Proc>,
    _dir: tempfile::TempDir,
    pub host: String,
    base: String,
    push_args: Vec<String>,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn plain() -> Registry {
        Registry::start(None, false)
    }

    /// TLS (a CA of the test's) and htpasswd basic auth for `user`/`password`.
    pub fn secure(user: &str, password: &str) -> Registry {
        Registry::start(Some((user, password)), false)
    }

    /// TLS and bearer tokens from tests/fixtures/registry_token.py, which grants `user`/`password`.
    pub fn token(user: &str, password: &str) -> Registry {
        Registry::start(Some((user, password)), true)
    }

    /// What the token server was asked: `USER SCOPE STATUS` lines.
    pub fn token_log(&self) -> Vec<String> {
        std::fs::read_to_string(self._dir.path().join("token.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn start(auth: Option<(&str, &str)>, bearer: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: test-secret\n",
            dir.path().join("data").display()
        );
        let mut push_args = Vec::new();
        let mut procs = Vec::new();
        let scheme = match auth {
            None => "http",
            Some((user, password)) => {
                let (ca, cert, key) = ca_and_cert(dir.path(), "registry", "IP:127.0.0.1");
                config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
                if bearer {
                    config.push_str(&token_server(dir.path(), &cert, &key, user, password, &mut procs));
                } else {
                    let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
                    std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
                    config.push_str(&format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", dir.path().join("htpasswd").display()));
                }
                push_args = vec!["--user".into(), format!("{user}:{password}"), "--cacert".into(), ca.display().to_string()];
                "https"
            }
        };
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        // The registry reads every REGISTRY_* variable as configuration: start it with none.
        procs.push(Proc(
            Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry (Debian package docker-registry)"),
        ));
        let base = format!("{scheme}://{host}");
        let ready = busy_wait(Duration::from_secs(15), || {
            let out = Command::new("curl").args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("{base}/v2/")]).output().unwrap();
            matches!(&out.stdout[..], b"200" | b"401")
        });
        assert!(ready, "registry: {}", std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default());
        Registry { _procs: procs, _dir: dir, host, base, push_args }
    }

    /// Pushes `repo:tag` (see tests/fixtures/oci_push.py for the kinds).
    pub fn push(&self, repo: &str, tag: &str, kind: &str) {
        let out =
            Command::new("python3").arg(fixtures().join("oci_push.py")).args([&self.base, repo, tag, kind]).args(&self.push_args).output().unwrap();
        assert!(out.status.success(), "push {repo}:{tag}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Starts the token server with the registry's TLS pair and a new signing pair; returns the
/// registry's `auth:` configuration.
fn token_server(dir: &Path, cert: &Path, key: &Path, user: &str, password: &str, procs: &mut Vec<Proc>) -> String {
    std::fs::copy(cert, dir.join("tls.crt")).unwrap();
    std::fs::copy(key, dir.join("tls.key")).unwrap();
    openssl(
        dir,
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=token-signer", "-keyout", "signer.key", "-out", "signer.crt"],
    );
    let script = fixtures().join("registry_token.py");
    let child = Command::new("python3").arg(script).arg(dir).args([user, password, "test-issuer", "test-registry"]).stdin(Stdio::null()).spawn();
    procs.push(Proc(child.expect("python3")));
    let portfile = dir.join("token.port");
    assert!(busy_wait(Duration::from_secs(10), || portfile.exists()), "the token server did not start");
    let port = std::fs::read_to_string(portfile).unwrap();
    format!(
        "auth:\n  token:\n    realm: https://127.0.0.1:{port}/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
        dir.join("signer.crt").display()
    )
}

fn commandless_pod(images: &[&str], annotations: Value, extra_spec: Value) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image, "env": [{"name": "S", "value": "vault:secret/data/a#b"}]}))
        .collect();
    let mut pod = pod_with(json!(containers), annotations);
    for (k, v) in extra_spec.as_object().unwrap() {
        pod["spec"][k] = v.clone();
    }
    pod
}

fn args_of(hook: &Webhook, pod: Value) -> Result<Vec<Vec<String>>, String> {
    let review = review_of(pod);
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!(code, 200, "{answer}");
    if answer["response"]["allowed"] == false {
        return Err(answer["response"]["status"]["message"].as_str().unwrap_or_default().to_string());
    }
    let pod = as_pod(&apply(&review, &answer).expect("a patch"));
    Ok(pod.spec.unwrap().containers.iter().map(|c| c.args.clone().unwrap_or_default()).collect())
}

#[test]
fn image_entrypoint_and_cmd_from_a_plain_registry() {
    let registry = Registry::plain();
    for (tag, kind) in [("docker", "docker"), ("oci", "oci"), ("cmdonly", "cmdonly"), ("multi", "multi")] {
        registry.push("app", tag, kind);
    }
    let api = KubeApi::start();
    let kubeconfig = api.kubeconfig.display().to_string();
    let hook = Webhook::start(&[("KUBECONFIG", &kubeconfig)]);
    let image = |tag: &str| format!("{}/app:{tag}", registry.host);
    let (docker, oci, cmdonly, multi) = (image("docker"), image("oci"), image("cmdonly"), image("multi"));
    let args = args_of(&hook, commandless_pod(&[&docker, &oci, &cmdonly, &multi], json!({}), json!({}))).unwrap();
    let flag = vec!["/bin/app".to_string(), "--flag".to_string()];
    assert_eq!(args, [flag.clone(), flag.clone(), flag.clone(), flag.clone()], "index resolved to linux/amd64, not its first entry");
    // The pod's node selector picks the platform.
    let arm = args_of(&hook, commandless_pod(&[&multi], json!({}), json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}))).unwrap();
    assert_eq!(arm, [["/bin/app", "--flag", "--arm64"]]);
    // Container args replace the image's Cmd.
    let mut pod = commandless_pod(&[&docker], json!({}), json!({}));
    pod["spec"]["containers"][0]["args"] = json!(["--other"]);
    assert_eq!(args_of(&hook, pod).unwrap(), [["/bin/app", "--other"]]);
    // A missing image names image and registry.
    let missing = image("nope");
    let error = args_of(&hook, commandless_pod(&[&missing], json!({}), json!({}))).unwrap_err();
    assert!(error.contains(&format!("image {missing} (registry {})", registry.host)) && error.contains("container c0"), "{error}");
    // Tagged images are cached: the second lookup of the same image does not reach the registry.
    let metrics = hook.get("/metrics").1;
    assert!(metrics.contains(&format!(r#"vault_webhook_registry_lookups_total{{target="{}",outcome="cached"}}"#, registry.host)), "{metrics}");
    assert!(api.requests().contains(&"/api/v1/namespaces/shop/serviceaccounts/app".to_string()), "pull secrets of the ServiceAccount are looked for");
}

#[test]
fn pods_created_at_once_share_one_image_lookup() {
    // A Deployment scaling up: eight pods with the same uncached image at the same moment.
    let registry = Registry::plain();
    registry.push("app", "7", "oci");
    let api = KubeApi::start();
    let kubeconfig = api.kubeconfig.display().to_string();
    let hook = Webhook::start(&[("KUBECONFIG", &kubeconfig)]);
    let image = format!("{}/app:7", registry.host);
    std::thread::scope(|s| {
        let pods: Vec<_> = (0..8).map(|_| s.spawn(|| args_of(&hook, commandless_pod(&[&image], json!({}), json!({}))))).collect();
        for pod in pods {
            assert_eq!(pod.join().unwrap().unwrap(), [["/bin/app", "--flag"]]);
        }
    });
    let metrics = hook.get("/metrics").1;
    let count = |outcome: &str| {
        let prefix = format!(r#"vault_webhook_registry_lookups_total{{target="{}",outcome="{outcome}"}} "#, registry.host);
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!((count("ok"), count("cached")), (1, 7), "{metrics}");
}

#[test]
fn registry_with_tls_and_basic_auth_uses_pull_secrets() {
    let registry = Registry::secure("puller", "s3cret-pw");
    registry.push("private/app", "1", "docker");
    let api = KubeApi::start();
    let config = |user: &str, password: &str| {
        let auth = STANDARD.encode(format!("{user}:{password}"));
        json!({"auths": {registry.host.clone(): {"auth": auth, "email": "x@example.com"}}}).to_string()
    };
    api.secret("shop", "regcred", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", config("puller", "s3cret-pw").as_bytes())]);
    api.secret("shop", "stale", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", config("puller", "old-pw").as_bytes())]);
    api.put(
        "shop",
        "serviceaccounts",
        "builder",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "builder", "namespace": "shop"}, "imagePullSecrets": [{"name": "regcred"}]}),
    );
    let kubeconfig = api.kubeconfig.display().to_string();
    let hook = Webhook::start(&[("KUBECONFIG", &kubeconfig)]);
    let image = format!("{}/private/app:1", registry.host);
    let skip = json!({"vault.security.banzaicloud.io/registry-skip-verify": "true"});
    let want = [["/bin/app", "--flag"]];

    // The pod's pull secret; a stale credential before it is tried and skipped.
    let pod = commandless_pod(&[&image], skip.clone(), json!({"imagePullSecrets": [{"name": "stale"}, {"name": "regcred"}]}));
    assert_eq!(args_of(&hook, pod).unwrap(), want);
    // The ServiceAccount's pull secret.
    let mut pod = commandless_pod(&[&image], skip.clone(), json!({}));
    pod["spec"]["serviceAccountName"] = json!("builder");
    assert_eq!(args_of(&hook, pod).unwrap(), want);
    // Without credentials: refused, and the error names image and registry but no password.
    let error = args_of(&hook, commandless_pod(&[&image], skip.clone(), json!({}))).unwrap_err();
    assert!(error.contains(&format!("image {image} (registry {})", registry.host)), "{error}");
    // Without registry-skip-verify the registry's self-signed certificate is refused.
    let pod = commandless_pod(&[&image], json!({}), json!({"imagePullSecrets": [{"name": "regcred"}]}));
    let error = args_of(&hook, pod).unwrap_err();
    assert!(error.contains("https") && error.contains(&registry.host), "{error}");
    assert!(!hook.log().contains("s3cret-pw") && !error.contains("s3cret-pw"), "credentials never logged");
}

#[test]
fn registry_with_bearer_tokens() {
    let registry = Registry::token("robot", "t0ken-pw");
    registry.push("private/app", "1", "oci");
    let api = KubeApi::start();
    let config = |password: &str| json!({"auths": {registry.host.clone(): {"auth": STANDARD.encode(format!("robot:{password}"))}}}).to_string();
    api.secret("shop", "regcred", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", config("t0ken-pw").as_bytes())]);
    api.secret("shop", "wrong", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", config("nope").as_bytes())]);
    let kubeconfig = api.kubeconfig.display().to_string();
    let hook = Webhook::start(&[("KUBECONFIG", &kubeconfig), ("REGISTRY_SKIP_VERIFY", "true")]);
    let image = format!("{}/private/app:1", registry.host);
    let before = registry.token_log().len();
    let pod = commandless_pod(&[&image], json!({}), json!({"imagePullSecrets": [{"name": "regcred"}]}));
    assert_eq!(args_of(&hook, pod).unwrap(), [["/bin/app", "--flag"]]);
    let asked = registry.token_log()[before..].to_vec();
    assert!(asked.contains(&"robot repository:private/app:pull 200".to_string()), "the webhook got a pull token: {asked:?}");
    // A wrong password: the token server refuses it, and the error names image and registry.
    let pod = commandless_pod(&[&image], json!({}), json!({"imagePullSecrets": [{"name": "wrong"}]}));
    let error = args_of(&hook, pod).unwrap_err();
    assert!(error.contains(&format!("image {image} (registry {})", registry.host)), "{error}");
    assert!(registry.token_log().iter().any(|l| l.starts_with("robot ") && l.ends_with(" 401")));
    assert!(!hook.log().contains("t0ken-pw") && !error.contains("t0ken-pw"));
}

/// Starts `tests/fixtures/SCRIPT ARGS...`, which writes its port to `portfile` once it listens.
fn python_fixture(script: &str, args: &[&str], portfile: &Path) -> (Proc, u16) {
    let child = Command::new("python3").arg(fixtures().join(script)).args(args).stdin(Stdio::null()).spawn();
    let proc = Proc(child.expect("python3"));
    assert!(busy_wait(Duration::from_secs(10), || portfile.exists()), "{script} did not start");
    (proc, std::fs::read_to_string(portfile).unwrap().trim().parse().unwrap())
}

/// A stand-in for ECR: the registry with basic auth as user AWS and the token's password;
/// tests/fixtures/aws.py for IMDS, STS, the Pod Identity agent and the ECR API (it checks the
/// request signatures with botocore); and an HTTPS proxy that tunnels
/// "123456789012.dkr.ecr.REGION.amazonaws.com:443" to the registry. (With a kubeconfig,
/// HTTPS_PROXY also carries the Kubernetes API calls: the proxy passes those through.)
struct FakeAws {
    _registry: Registry,
    api: KubeApi,
    dir: tempfile::TempDir,
    endpoint: String,
    proxy: String,
    _procs: [Proc; 2],
}

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const ECR_PASSWORD: &str = "ecr-t0ken-pw";

impl FakeAws {
    fn start() -> FakeAws {
        let registry = Registry::secure("AWS", ECR_PASSWORD);
        registry.push("team/app", "1", "oci");
        registry.push("team/app", "2", "docker");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let (aws, aws_port) = python_fixture("aws.py", &[d, ECR_PASSWORD], &dir.path().join("aws.port"));
        let (proxy, proxy_port) = python_fixture("connect_proxy.py", &[d, ".amazonaws.com", &registry.host], &dir.path().join("proxy.port"));
        FakeAws {
            _registry: registry,
            api: KubeApi::start(),
            endpoint: format!("http://127.0.0.1:{aws_port}"),
            proxy: format!("http://127.0.0.1:{proxy_port}"),
            dir,
            _procs: [aws, proxy],
        }
    }

    /// The webhook, with `env` on top of the proxy, the endpoints and the kubeconfig.
    fn webhook(&self, env: &[(&str, &str)]) -> Webhook {
        let kubeconfig = self.api.kubeconfig.display().to_string();
        let mut all = vec![
            ("KUBECONFIG", kubeconfig.as_str()),
            ("HTTPS_PROXY", self.proxy.as_str()),
            ("AWS_ENDPOINT_URL_ECR", self.endpoint.as_str()),
            ("REGISTRY_SKIP_VERIFY", "true"),
        ];
        all.extend_from_slice(env);
        Webhook::start(&all)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aws.log")).unwrap_or_default()
    }

    /// The webhook's log and `error` hold none of the fixture's secrets.
    fn assert_no_secret_in(&self, hook: &Webhook, error: &str) {
        let logged = hook.log();
        let secrets =
            [ECR_PASSWORD, "secret+access+key", "session-token", "imds-session-token-1", "pod-identity-agent-token", "fixture-service-account-token"];
        for secret in secrets {
            assert!(!logged.contains(secret) && !error.contains(secret), "{secret} leaked");
        }
    }
}

#[test]
fn ecr_images_without_a_pull_secret_use_the_instance_role() {
    let aws = FakeAws::start();
    let hook = aws.webhook(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &aws.endpoint)]);
    let pod = commandless_pod(&[&format!("{ECR}/team/app:1"), &format!("{ECR}/team/app:2")], json!({}), json!({}));
    assert_eq!(args_of(&hook, pod).unwrap(), [["/bin/app", "--flag"], ["/bin/app", "--flag"]]);
    let log = aws.log();
    for step in
        ["PUT /latest/api/token", "GET /latest/meta-data/iam/security-credentials/", "GET /latest/meta-data/iam/security-credentials/node-role"]
    {
        assert!(log.lines().any(|l| l == step), "{step} not in {log}");
    }
    assert_eq!(log.matches("ecr us-east-1 signature-ok ASIAIMDSKEY").count(), 1, "one signed token request for both images: {log}");
    assert!(!log.contains("bad-signature") && !log.contains("without the session token"), "{log}");
    let tunnels = std::fs::read_to_string(aws.dir.path().join("proxy.log")).unwrap();
    assert!(tunnels.lines().any(|l| l == format!("{ECR}:443")), "{tunnels}");

    // With a pull secret for the registry, the instance role is not asked.
    let auth = STANDARD.encode(format!("AWS:{ECR_PASSWORD}"));
    let config = json!({"auths": {ECR: {"auth": auth}}}).to_string();
    aws.api.secret("shop", "ecr-pull", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", config.as_bytes())]);
    let pod = commandless_pod(&[&format!("{ECR}/team/app:2")], json!({}), json!({"imagePullSecrets": [{"name": "ecr-pull"}]}));
    assert_eq!(args_of(&hook, pod).unwrap(), [["/bin/app", "--flag"]]);
    assert_eq!(aws.log().matches("signature-ok").count(), 1);

    // A region where the role may not get a token: the answer names image, registry and AWS's reason.
    let denied = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let error = args_of(&hook, commandless_pod(&[&format!("{denied}/team/app:1")], json!({}), json!({}))).unwrap_err();
    assert!(error.contains(&format!("image {denied}/team/app:1 (registry {denied})")), "{error}");
    assert!(error.contains("AccessDeniedException") && error.contains("ecr:GetAuthorizationToken"), "{error}");
    assert!(aws.log().contains("ecr eu-west-1 signature-ok"));
    let metrics = hook.get("/metrics").1;
    for line in [
        format!(r#"vault_webhook_ecr_tokens_total{{target="{ECR}",outcome="ok"}} 1"#),
        format!(r#"vault_webhook_ecr_tokens_total{{target="{denied}",outcome="error"}} 1"#),
    ] {
        assert!(metrics.contains(&line), "{line} not in {metrics}");
    }
    aws.assert_no_secret_in(&hook, &error);
}

#[test]
fn ecr_credentials_from_irsa_and_pod_identity() {
    let aws = FakeAws::start();
    let image = format!("{ECR}/team/app:1");
    // IRSA: the projected service-account token is exchanged at STS; IMDS is never asked.
    let token_file = aws.dir.path().join("irsa-token");
    std::fs::write(&token_file, "eyJ.fixture-service-account-token.sig\n").unwrap();
    let token_path = token_file.display().to_string();
    let irsa = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/webhook"),
        ("AWS_ENDPOINT_URL_STS", aws.endpoint.as_str()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", aws.endpoint.as_str()),
    ];
    let hook = aws.webhook(&irsa);
    assert_eq!(args_of(&hook, commandless_pod(&[&image], json!({}), json!({}))).unwrap(), [["/bin/app", "--flag"]]);
    let log = aws.log();
    assert!(log.contains("sts AssumeRoleWithWebIdentity arn:aws:iam::123456789012:role/webhook vault-secrets-webhook"), "{log}");
    assert!(log.contains("ecr us-east-1 signature-ok ASIAIRSAKEY") && !log.contains("/latest/"), "{log}");
    aws.assert_no_secret_in(&hook, "");
    // A role STS refuses: the answer says so.
    let wrong = [("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/other"), irsa[0], irsa[2]];
    let refused = aws.webhook(&wrong);
    let error = args_of(&refused, commandless_pod(&[&image], json!({}), json!({}))).unwrap_err();
    assert!(error.contains("STS AssumeRoleWithWebIdentity") && error.contains("AccessDenied"), "{error}");

    // EKS Pod Identity: the agent's endpoint with its token file.
    let agent_token = aws.dir.path().join("pod-identity-token");
    std::fs::write(&agent_token, "pod-identity-agent-token").unwrap();
    let uri = format!("{}/v1/credentials", aws.endpoint);
    let agent_path = agent_token.display().to_string();
    let hook = aws.webhook(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri), ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &agent_path)]);
    assert_eq!(args_of(&hook, commandless_pod(&[&image], json!({}), json!({}))).unwrap(), [["/bin/app", "--flag"]]);
    let log = aws.log();
    assert!(log.contains("GET /v1/credentials authorized") && log.contains("signature-ok ASIAPODIDKEY"), "{log}");
    aws.assert_no_secret_in(&hook, "");
}

#[test]
fn default_pull_secret_for_pods_without_one() {
    let registry = Registry::secure("ci", "ci-pass");
    registry.push("team/app", "2", "oci");
    let api = KubeApi::start();
    let auth = STANDARD.encode("ci:ci-pass");
    let dockerconfig = json!({"auths": {registry.host.clone(): {"auth": auth}}}).to_string();
    api.secret("infra", "global-pull", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", dockerconfig.as_bytes())]);
    let kubeconfig = api.kubeconfig.display().to_string();
    let hook = Webhook::start(&[
        ("KUBECONFIG", &kubeconfig),
        ("DEFAULT_IMAGE_PULL_SECRET", "global-pull"),
        ("DEFAULT_IMAGE_PULL_SECRET_NAMESPACE", "infra"),
        ("REGISTRY_SKIP_VERIFY", "true"),
    ]);
    let image = format!("{}/team/app:2", registry.host);
    assert_eq!(args_of(&hook, commandless_pod(&[&image], json!({}), json!({}))).unwrap(), [["/bin/app", "--flag"]]);
    assert!(api.requests().contains(&"/api/v1/namespaces/infra/secrets/global-pull".to_string()));
}
