//! A fixture Kubernetes API (tests/fixtures/kube_api.py): the real read paths for Secrets,
//! ConfigMaps and ServiceAccounts, and TokenRequest, with a kubeconfig for the webhook.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::path::PathBuf;

/// A Kubernetes API stand-in: real paths, real JSON (tests/fixtures/kube_api.py).
pub struct KubeApi {
    pub _proc: Proc,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl KubeApi {
    pub fn start() -> KubeApi {
        let dir = tempfile::tempdir().unwrap();
        let portfile = dir.path().join("port");
        let proc = Proc::new(
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
