//! A real Kubernetes control plane for black-box tests: etcd and kube-apiserver, built from their
//! Go modules by scripts/go-tools.sh, on free loopback ports, with RBAC, a service-account signing
//! key (TokenRequest, TokenReview) and a static admin token; and helm, run against it. No kubelet:
//! pods are admitted and stored, never run (the end-to-end tests' node runs them: `node.rs`). One
//! per test, fast to start; everything is stopped (by PID) when dropped.

use super::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The static admin token (`system:masters`).
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// A Go program built by scripts/go-tools.sh (`VAULT_ENV_TOOLS`, else ~/.cache/vault-env/tools).
pub fn go_tool(name: &str) -> PathBuf {
    let (module, dir) = match name {
        "kube-apiserver" | "kubectl" => ("k8s.io/kubernetes", "kube"),
        "etcd" => ("go.etcd.io/etcd/server/v3", "etcd"),
        "helm" => ("helm.sh/helm/v3", "helm"),
        "consul-template" => ("github.com/hashicorp/consul-template", "consul-template"),
        other => panic!("no such tool {other}"),
    };
    let go_mod = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools").join(dir).join("go.mod")).unwrap();
    let version = go_mod
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(module)).then(|| words.next()).flatten()
        })
        .expect("the pinned version");
    let cache =
        path_from_env("VAULT_ENV_TOOLS").unwrap_or_else(|| path_from_env("HOME").unwrap_or_else(|| "/root".into()).join(".cache/vault-env/tools"));
    let path = cache.join(format!("{name}-{version}"));
    assert!(path.exists(), "{} is missing: build it with scripts/go-tools.sh (scripts/test.sh does)", path.display());
    path
}

pub struct Cluster {
    /// The processes this value started (none for a node's API server, which scripts/node.sh runs).
    _procs: Vec<Proc>,
    pub dir: tempfile::TempDir,
    /// The admin's bearer token (`system:masters`).
    pub token: String,
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// The API server's serving certificate (self-signed), to verify it.
    pub ca: PathBuf,
    pub kubeconfig: PathBuf,
    /// The CA of the client certificate the API server presents to webhooks: the webhook's
    /// `TLS_CLIENT_CA_FILE`.
    pub webhook_client_ca: PathBuf,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(d, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"]);
        openssl(d, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        std::fs::write(d.join("tokens.csv"), format!("{ADMIN_TOKEN},admin,admin,system:masters\n")).unwrap();
        // The API server presents a client certificate to every admission webhook (its
        // AdmissionConfiguration's kubeConfigFile), signed by `webhook_client_ca`.
        let clients = d.join("webhook-client");
        std::fs::create_dir_all(&clients).unwrap();
        let (webhook_client_ca, client_cert, client_key) = ca_and_cert(&clients, "kube-apiserver", "DNS:kube-apiserver");
        std::fs::write(
            d.join("webhook-kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: \"*\"\n  user:\n    client-certificate: {}\n    client-key: {}\n",
                client_cert.display(),
                client_key.display()
            ),
        )
        .unwrap();
        let webhook_config = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: WebhookAdmissionConfiguration\nkubeConfigFile: {}\n",
            d.join("webhook-kubeconfig").display()
        );
        let indented: String = webhook_config.lines().map(|l| format!("    {l}\n")).collect();
        std::fs::write(
            d.join("admission.yaml"),
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n\
                 - name: MutatingAdmissionWebhook\n  configuration:\n{indented}\
                 - name: ValidatingAdmissionWebhook\n  configuration:\n{indented}"
            ),
        )
        .unwrap();
        let (client, peer) = (free_port(), free_port());
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        let etcd = Proc::new(
            Command::new(go_tool("etcd"))
                .arg(format!("--data-dir={}", d.join("etcd").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
                .stdin(Stdio::null())
                .stdout(log("etcd.log"))
                .stderr(log("etcd.log.err"))
                .spawn()
                .expect("start etcd"),
        );
        let port = free_port();
        let apiserver = Proc::new(
            Command::new(go_tool("kube-apiserver"))
                .arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
                .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
                .arg(format!("--secure-port={port}"))
                .arg(format!("--cert-dir={}", d.join("certs").display()))
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
                .arg(format!("--service-account-key-file={}", d.join("sa.pub").display()))
                .arg(format!("--service-account-signing-key-file={}", d.join("sa.key").display()))
                .arg("--authorization-mode=Node,RBAC")
                .arg(format!("--token-auth-file={}", d.join("tokens.csv").display()))
                .arg(format!("--admission-control-config-file={}", d.join("admission.yaml").display()))
                .stdin(Stdio::null())
                .stdout(log("apiserver.log"))
                .stderr(log("apiserver.log.err"))
                .spawn()
                .expect("start kube-apiserver"),
        );
        let url = format!("https://127.0.0.1:{port}");
        let ca = d.join("certs/apiserver.crt");
        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority: {}\n\
                 users:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n\
                 current-context: test\n",
                ca.display()
            ),
        )
        .unwrap();
        let cluster = Cluster { _procs: vec![apiserver, etcd], dir, token: ADMIN_TOKEN.into(), url, ca, kubeconfig, webhook_client_ca };
        let ready = busy_wait(Duration::from_secs(60), || cluster.ca.exists() && cluster.api("GET", "/readyz", None).0 == 200);
        assert!(ready, "kube-apiserver is not ready:\n{}", cluster.log());
        cluster
    }

    /// An API server someone else runs (a node's: tests/common/node.rs), described by the
    /// `KEY=VALUE` lines scripts/node.sh writes (URL, CA, KUBECONFIG, ADMIN_TOKEN, WEBHOOK_CLIENT_CA).
    pub fn attach(env: &str) -> Cluster {
        let get = |key: &str| {
            env.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or_else(|| panic!("{key} is missing from {env}")).to_string()
        };
        Cluster {
            _procs: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            token: get("ADMIN_TOKEN"),
            url: get("URL"),
            ca: get("CA").into(),
            kubeconfig: get("KUBECONFIG").into(),
            webhook_client_ca: get("WEBHOOK_CLIENT_CA").into(),
        }
    }

    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let tail = |s: String| s.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        format!("{}\n{}", tail(read("apiserver.log.err")), tail(read("etcd.log.err")))
    }

    /// A call as the admin: `(status, body)`.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.api_as(&self.token, method, path, body, "application/json")
    }

    pub fn api_as(&self, token: &str, method: &str, path: &str, body: Option<&Value>, content_type: &str) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "-X", method, "--cacert"]).arg(&self.ca);
        cmd.args(["-H", &format!("Authorization: Bearer {token}"), "-w", "\n%{http_code}"]);
        if let Some(b) = body {
            let file = self.dir.path().join(format!("body-{}.json", fastrand::u64(..)));
            std::fs::write(&file, b.to_string()).unwrap();
            cmd.args(["-H", &format!("Content-Type: {content_type}"), "--data-binary", &format!("@{}", file.display())]);
        }
        let out = cmd.arg(format!("{}{path}", self.url)).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
    }

    /// A POST as the admin that must succeed: the body, and the `Warning` headers the API server
    /// sent (admission webhooks' warnings, as kubectl prints them).
    pub fn create_with_warnings(&self, path: &str, body: &Value) -> (Value, Vec<String>) {
        let headers = self.dir.path().join(format!("headers-{}", fastrand::u64(..)));
        let file = self.dir.path().join(format!("body-{}.json", fastrand::u64(..)));
        std::fs::write(&file, body.to_string()).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-X", "POST", "--cacert"])
            .arg(&self.ca)
            .args(["-H", &format!("Authorization: Bearer {}", self.token), "-H", "Content-Type: application/json", "-D"])
            .arg(&headers)
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("curl");
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(answer["metadata"]["uid"].is_string(), "POST {path}: {answer}");
        let warnings = std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("Warning: ").or_else(|| l.strip_prefix("warning: ")))
            .map(|w| w.trim().to_string())
            .collect();
        (answer, warnings)
    }

    /// A call that must succeed; returns the body.
    pub fn must(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (code, answer) = self.api(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: HTTP {code}: {answer}");
        answer
    }

    /// Installs a namespaced CRD `PLURAL.GROUP` (version v1, any fields) and waits until it is
    /// served; returns its collection path in `namespace`.
    pub fn crd(&self, group: &str, plural: &str, kind: &str, namespace: &str) -> String {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        self.must(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(&json!({"metadata": {"name": format!("{plural}.{group}")}, "spec": {
                "group": group, "scope": "Namespaced",
                "names": {"plural": plural, "singular": kind.to_ascii_lowercase(), "kind": kind},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]}})),
        );
        let path = format!("/apis/{group}/v1/namespaces/{namespace}/{plural}");
        assert!(busy_wait(Duration::from_secs(30), || self.api("GET", &path, None).0 == 200), "the CRD {plural}.{group} is not served");
        path
    }

    /// A namespace with its `default` ServiceAccount (no controller manager makes it here).
    pub fn namespace(&self, name: &str) {
        self.namespace_with(name, json!({}));
    }

    /// A namespace with these labels.
    pub fn namespace_with(&self, name: &str, labels: Value) {
        self.must("POST", "/api/v1/namespaces", Some(&json!({"metadata": {"name": name, "labels": labels}})));
        self.service_account(name, "default");
    }

    pub fn service_account(&self, namespace: &str, name: &str) {
        self.must("POST", &format!("/api/v1/namespaces/{namespace}/serviceaccounts"), Some(&json!({"metadata": {"name": name}})));
    }

    /// A token of `namespace/name` from the TokenRequest API.
    pub fn token(&self, namespace: &str, name: &str, audiences: &[&str]) -> String {
        let request =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": audiences, "expirationSeconds": 3600}});
        let answer = self.must("POST", &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"), Some(&request));
        answer["status"]["token"].as_str().expect("a token").to_string()
    }

    /// OpenBao's kubernetes auth at `auth/kubernetes`, checking tokens with this API server's
    /// TokenReview as the ServiceAccount `vault-infra/token-reviewer` (`system:auth-delegator`),
    /// with a role `app` for the ServiceAccount `shop/app` (both created here) and `policy`.
    pub fn kubernetes_auth(&self, bao: &Bao, policy: &str) {
        self.namespace("vault-infra");
        self.service_account("vault-infra", "token-reviewer");
        self.must(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&json!({
                "metadata": {"name": "token-reviewer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
                "subjects": [{"kind": "ServiceAccount", "name": "token-reviewer", "namespace": "vault-infra"}],
            })),
        );
        let reviewer = self.token("vault-infra", "token-reviewer", &[]);
        bao.enable_auth("kubernetes", "kubernetes");
        let ca = std::fs::read_to_string(&self.ca).unwrap();
        bao.api(
            "POST",
            "auth/kubernetes/config",
            Some(json!({"kubernetes_host": self.url, "kubernetes_ca_cert": ca, "token_reviewer_jwt": reviewer})),
        );
        self.namespace("shop");
        self.service_account("shop", "app");
        bao.api(
            "POST",
            "auth/kubernetes/role/app",
            Some(json!({"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["shop"], "token_policies": [policy], "ttl": "10m"})),
        );
    }

    /// `helm ARGS` against this API server.
    pub fn helm(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(go_tool("helm"));
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm/data"));
        run_with_timeout(cmd, Duration::from_secs(120))
    }
}

/// Another team's mutating webhook (tests/fixtures/sidecar_webhook.py): adds a container named
/// "sidecar" with a vault: value to pods that have none. Stopped when dropped.
pub struct SidecarWebhook {
    _proc: Proc,
    _dir: tempfile::TempDir,
    pub url: String,
    pub ca: PathBuf,
}

impl SidecarWebhook {
    pub fn start() -> SidecarWebhook {
        SidecarWebhook::adding(None)
    }

    /// Adds `sidecar` (a container, as JSON) instead of the fixture's own.
    pub fn adding(sidecar: Option<&Value>) -> SidecarWebhook {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = ca_and_cert(dir.path(), "sidecar", "IP:127.0.0.1");
        let portfile = dir.path().join("port");
        let sidecar = sidecar.map(Value::to_string);
        let mut args = vec![cert.to_str().unwrap(), key.to_str().unwrap(), portfile.to_str().unwrap()];
        args.extend(sidecar.as_deref());
        let (proc, port) = python_fixture("sidecar_webhook.py", &args, &portfile);
        SidecarWebhook { _proc: proc, _dir: dir, url: format!("https://127.0.0.1:{port}/"), ca }
    }
}
