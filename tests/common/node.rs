//! The end-to-end layer: one Kubernetes node per test run, with a real kubelet and containerd
//! (scripts/node.sh: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, all on
//! 127.0.0.1), started by the first test that asks for it. It is torn down when this test process
//! ends, however it ends: `node.sh serve` waits on a pipe whose other end only this process holds,
//! then stops everything by PID and removes its mounts, cgroups and files. Each test works in a
//! namespace of its own, deleted when the test ends.

use super::*;
use serde_json::{Value, json};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub struct Node {
    pub cluster: Cluster,
    /// scripts/node.sh's state directory (`VAULT_ENV_NODE_DIR`, default `$TMPDIR/vault-env-node`).
    pub dir: PathBuf,
    /// The pipe `node.sh serve` waits on: closed when this process exits, never before.
    _lifeline: ChildStdin,
    /// `node.sh serve`, never waited for: it outlives this process to tear the node down.
    _serve: Child,
}

static NODE: OnceLock<Node> = OnceLock::new();

/// The node, started on first use (about 10 s).
pub fn node() -> &'static Node {
    NODE.get_or_init(Node::start)
}

/// The images scripts/images.sh builds, as the node's containerd knows them.
pub const VAULT_ENV_IMAGE: &str = "localhost/vault-env:test";
pub const WEBHOOK_IMAGE: &str = "localhost/vault-secrets-webhook:test";
/// busybox and nothing else.
pub const APP_IMAGE: &str = "localhost/vault-env-test-base:test";

impl Node {
    fn start() -> Node {
        let dir = path_from_env("VAULT_ENV_NODE_DIR").unwrap_or_else(|| std::env::temp_dir().join("vault-env-node"));
        let log_path = dir.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/node.sh");
        let mut child = Command::new("bash")
            .arg(script)
            .arg("serve")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("bash scripts/node.sh");
        // It prints one line once the node is Ready (or exits having torn down what it started).
        let mut line = String::new();
        let _ = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        assert_eq!(line.trim(), "ready", "the node did not start:\n{}", log());
        let env = std::fs::read_to_string(dir.join("cluster.env")).unwrap_or_else(|e| panic!("{}/cluster.env: {e}\n{}", dir.display(), log()));
        Node { cluster: Cluster::attach(&env), dir, _lifeline: child.stdin.take().unwrap(), _serve: child }
    }

    /// A namespace for one test (`e2e-NAME`), with `labels`; deleted when the guard is dropped.
    pub fn namespace(&'static self, name: &str, labels: Value) -> Namespace {
        let name = format!("e2e-{name}");
        self.cluster.must("POST", "/api/v1/namespaces", Some(&json!({"metadata": {"name": name, "labels": labels}})));
        // The controller manager creates its ServiceAccount `default` (the pods' identity).
        let sa = format!("/api/v1/namespaces/{name}/serviceaccounts/default");
        assert!(busy_wait(Duration::from_secs(30), || self.cluster.api("GET", &sa, None).0 == 200), "no ServiceAccount default in {name}");
        Namespace { node: self, name }
    }

    /// `kubectl ARGS` as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(go_tool("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.cluster.kubeconfig).args(args);
        run_with_timeout(cmd, Duration::from_secs(120))
    }

    /// OpenBao's kubernetes auth at `auth/kubernetes` checking tokens with this API server's
    /// TokenReview (as the admin), once per OpenBao server.
    pub fn kubernetes_auth(&self, bao: &Bao) {
        bao.enable_auth("kubernetes", "kubernetes");
        let ca = std::fs::read_to_string(&self.cluster.ca).unwrap();
        bao.api(
            "POST",
            "auth/kubernetes/config",
            Some(json!({"kubernetes_host": self.cluster.url, "kubernetes_ca_cert": ca, "token_reviewer_jwt": self.cluster.token})),
        );
    }
}

/// A test's namespace on the node; deleted (without waiting) when dropped.
pub struct Namespace {
    pub node: &'static Node,
    pub name: String,
}

impl Namespace {
    pub fn path(&self, resource: &str) -> String {
        let group = match resource {
            "deployments" | "replicasets" => "/apis/apps/v1",
            _ => "/api/v1",
        };
        format!("{group}/namespaces/{}/{resource}", self.name)
    }

    pub fn create(&self, resource: &str, object: &Value) -> Value {
        self.node.cluster.must("POST", &self.path(resource), Some(object))
    }

    pub fn get(&self, resource: &str, name: &str) -> Value {
        self.node.cluster.must("GET", &format!("{}/{name}", self.path(resource)), None)
    }

    /// The pods whose labels match `selector` (`app=web`).
    pub fn pods(&self, selector: &str) -> Vec<Value> {
        let list = self.node.cluster.must("GET", &format!("{}?labelSelector={selector}", self.path("pods")), None);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `pod` is in `phase` (Running, Succeeded, ...); its status when it is not.
    pub fn wait_phase(&self, pod: &str, phases: &[&str], timeout: Duration) -> Result<Value, String> {
        let mut last = Value::Null;
        let done = busy_wait(timeout, || {
            last = self.node.cluster.api("GET", &format!("{}/{pod}", self.path("pods")), None).1;
            last["status"]["phase"].as_str().is_some_and(|p| phases.contains(&p))
        });
        if done { Ok(last) } else { Err(format!("pod {pod} is not {phases:?}: {}\n{}", last["status"], self.events())) }
    }

    /// Waits until the Deployment `name` is Available; the pods' state and events when it is not.
    pub fn wait_available(&self, name: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let available = busy_wait(timeout, || {
            last = self.get("deployments", name);
            let conditions = last["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conditions.iter().any(|c| c["type"] == "Available" && c["status"] == "True") && last["status"]["readyReplicas"].as_i64() >= Some(1)
        });
        assert!(available, "Deployment {name} is not Available: {}\npods: {}\n{}", last["status"], json!(self.pods("")), self.events());
        last
    }

    /// A container's log, read through the API server (which asks the kubelet).
    pub fn logs(&self, pod: &str, container: &str) -> String {
        let (code, log) = self.try_logs(pod, container);
        assert_eq!(code, 200, "logs of {pod}/{container}: {log}");
        log
    }

    /// Waits until `pod`'s `container` has logged a line containing `text`; the log.
    pub fn wait_log(&self, pod: &str, container: &str, text: &str, timeout: Duration) -> String {
        let mut log = String::new();
        let found = busy_wait(timeout, || {
            let (code, text_now) = self.try_logs(pod, container);
            log = text_now;
            code == 200 && log.contains(text)
        });
        assert!(found, "{pod}/{container} never logged {text:?}:\n{log}\n{}", self.events());
        log
    }

    /// `(status, text)` of a container's log.
    fn try_logs(&self, pod: &str, container: &str) -> (u16, String) {
        let (code, body) = self.node.cluster.api("GET", &format!("{}/{pod}/log?container={container}", self.path("pods")), None);
        (code, body.as_str().map(str::to_string).unwrap_or_else(|| body.to_string()))
    }

    /// This namespace's events, a line each (for failure messages).
    pub fn events(&self) -> String {
        let list = self.node.cluster.api("GET", &self.path("events"), None).1;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|e| format!("{} {} {}: {}", e["type"], e["involvedObject"]["name"], e["reason"], e["message"]))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Our webhook as a process on the host ([`node_webhook`] with `env`), registered for this
    /// namespace.
    pub fn start_webhook(&self, env: &[(&str, &str)]) -> Webhook {
        let hook = node_webhook(self.node, env);
        self.register_webhook(&hook);
        hook
    }

    /// A MutatingWebhookConfiguration sending this namespace's pods (and Secrets) to `hook`,
    /// failing closed, as the chart registers it.
    pub fn register_webhook(&self, hook: &Webhook) {
        let ca = b64(&std::fs::read(&hook.ca).unwrap());
        let selector = json!({"matchLabels": {"kubernetes.io/metadata.name": self.name}});
        let entry = |name: &str, path: &str, resource: &str| {
            json!({"name": format!("{name}.vault-secrets-webhook.test"), "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
                   "failurePolicy": "Fail", "timeoutSeconds": 10, "reinvocationPolicy": "IfNeeded",
                   "clientConfig": {"url": format!("{}{path}", hook.url), "caBundle": ca},
                   "namespaceSelector": selector,
                   "objectSelector": {"matchExpressions": [{"key": "security.banzaicloud.io/mutate", "operator": "NotIn", "values": ["skip"]}]},
                   "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource]}]})
        };
        self.node.cluster.must(
            "POST",
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            Some(&json!({"metadata": {"name": self.name}, "webhooks": [entry("pods", "/pods", "pods"), entry("secrets", "/secrets", "secrets")]})),
        );
        // The API server learns of it through an informer: wait until a dry run is mutated.
        // (Compliant with Pod Security's `restricted`, which a test's namespace may enforce.)
        let probe = json!({"metadata": {"name": "probe"}, "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": APP_IMAGE, "command": ["sh"], "env": [{"name": "X", "value": "vault:secret/data/probe#x"}],
                            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}});
        let mutated = || {
            self.node.cluster.api("POST", &format!("{}?dryRun=All", self.path("pods")), Some(&probe)).1["spec"]["containers"][0]["command"].clone()
        };
        assert!(busy_wait(Duration::from_secs(20), || mutated() == json!(["/vault/vault-env"])), "the webhook is not called: {}", mutated());
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let cluster = &self.node.cluster;
        let _ = cluster.api("DELETE", &format!("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{}", self.name), None);
        let _ = cluster.api("DELETE", &format!("/api/v1/namespaces/{}", self.name), None);
    }
}

/// The webhook as a process on the node's host, for this node: its API server (KUBECONFIG), the
/// API server's client certificate verified, the images the node has (never pulled: vault-env,
/// OpenBao as the agent, consul-template), and `env`.
pub fn node_webhook(node: &Node, env: &[(&str, &str)]) -> Webhook {
    let kubeconfig = node.cluster.kubeconfig.display().to_string();
    let client_ca = node.cluster.webhook_client_ca.display().to_string();
    let mut all = vec![
        ("KUBECONFIG", kubeconfig.as_str()),
        ("TLS_CLIENT_CA_FILE", client_ca.as_str()),
        ("VAULT_ENV_IMAGE", VAULT_ENV_IMAGE),
        ("VAULT_ENV_PULL_POLICY", "Never"),
        ("VAULT_IMAGE", "localhost/vault-env-test-bao:test"),
        ("VAULT_IMAGE_PULL_POLICY", "Never"),
        ("VAULT_CT_IMAGE", "localhost/vault-env-test-consul-template:test"),
        ("VAULT_CT_PULL_POLICY", "Never"),
    ];
    all.extend_from_slice(env);
    Webhook::start(&all)
}
