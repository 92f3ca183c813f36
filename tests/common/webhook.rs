//! The webhook process for black-box tests: its binary, a serving certificate, the process
//! (killed when dropped), AdmissionReviews over HTTPS, and reading the patched object.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn webhook_bin() -> PathBuf {
    let path = path_from_env("VAULT_SECRETS_WEBHOOK_BIN").unwrap_or_else(|| vault_env_bin().with_file_name("vault-secrets-webhook"));
    assert!(path.exists(), "{} is missing: build it first with `cargo build -p vault-env-webhook` (scripts/test.sh does)", path.display());
    path
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Starts `tests/fixtures/SCRIPT ARGS...`, which writes its port to `portfile` once it listens.
pub fn python_fixture(script: &str, args: &[&str], portfile: &Path) -> (Proc, u16) {
    let child = Command::new("python3").arg(fixtures().join(script)).args(args).stdin(Stdio::null()).spawn();
    let proc = Proc::new(child.expect("python3"));
    assert!(busy_wait(Duration::from_secs(10), || portfile.exists()), "{script} did not start");
    (proc, std::fs::read_to_string(portfile).unwrap().trim().parse().unwrap())
}

pub struct Webhook {
    pub proc: Proc,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// The client certificate and key `curl` presents, when the webhook verifies callers.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Webhook {
    pub fn start(env: &[(&str, &str)]) -> Webhook {
        Webhook::start_with_log(env, None)
    }

    /// Started with `TLS_CLIENT_CA_FILE`; [`Webhook::post`] presents a client certificate that CA
    /// signed (as the API server would), [`Webhook::post_without_certificate`] none.
    pub fn start_verifying_callers(env: &[(&str, &str)]) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = ca_and_cert(dir.path(), "webhook", "IP:127.0.0.1,DNS:localhost");
        let (_, client_cert, client_key) = ca_and_cert(dir.path(), "caller", "DNS:kube-apiserver");
        let ca_file = ca.display().to_string();
        let env: Vec<(&str, &str)> = env.iter().copied().chain([("TLS_CLIENT_CA_FILE", ca_file.as_str())]).collect();
        let mut hook = Webhook::launch(dir, ca, &cert, &key, &env);
        hook.client = Some((client_cert, client_key));
        hook
    }

    /// Started with its stdout and stderr on `log` instead of a file ([`Webhook::log`] is empty).
    pub fn start_logging_to(log: std::io::PipeWriter, env: &[(&str, &str)]) -> Webhook {
        Webhook::start_with_log(env, Some(log))
    }

    /// With a certificate of its own; its output in a file, or on `log`.
    fn start_with_log(env: &[(&str, &str)], log: Option<std::io::PipeWriter>) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = ca_and_cert(dir.path(), "webhook", "IP:127.0.0.1,DNS:localhost");
        Webhook::launch_with(dir, ca, &cert, &key, env, log)
    }

    /// Starts the webhook serving `cert`/`key`, which `ca` verifies.
    pub fn launch(dir: tempfile::TempDir, ca: PathBuf, cert: &Path, key: &Path, env: &[(&str, &str)]) -> Webhook {
        Webhook::launch_with(dir, ca, cert, key, env, None)
    }

    fn launch_with(dir: tempfile::TempDir, ca: PathBuf, cert: &Path, key: &Path, env: &[(&str, &str)], log: Option<std::io::PipeWriter>) -> Webhook {
        let port = free_port();
        let (out, err): (Stdio, Stdio) = match log {
            Some(pipe) => (pipe.try_clone().unwrap().into(), pipe.into()),
            None => {
                let file = std::fs::File::create(dir.path().join("webhook.log")).unwrap();
                (file.try_clone().unwrap().into(), file.into())
            }
        };
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
            .stdout(out)
            .stderr(err);
        let proc = Proc::new(cmd.spawn().expect("start the webhook"));
        let mut hook = Webhook { proc, url: format!("https://127.0.0.1:{port}"), dir, ca, client: None };
        let ready = busy_wait(Duration::from_secs(20), || hook.exited() || hook.get("/healthz").0 == 200);
        assert!(ready && !hook.exited(), "the webhook did not start: {}", hook.log());
        hook
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.proc.0.try_wait(), Ok(Some(_)))
    }

    /// The webhook's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM").and_then(|v| v.trim_end_matches(" kB").parse().ok()).unwrap()
    }

    /// A field of the webhook's `/proc/PID/status`, if the kernel reports it.
    pub fn status_field(&self, name: &str) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id())).unwrap();
        status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim().to_string())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook.log")).unwrap_or_default()
    }

    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        self.curl_as(self.client.as_ref(), args)
    }

    fn curl_as(&self, client: Option<&(PathBuf, PathBuf)>, args: &[&str]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--cacert"]).arg(&self.ca).args(["-w", "\n%{http_code}"]);
        if let Some((cert, key)) = client {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let out = cmd.args(args).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        match code.trim().parse().unwrap_or(0) {
            0 => (0, format!("curl: {}", String::from_utf8_lossy(&out.stderr))),
            code => (code, body.to_string()),
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.curl(&[&format!("{}{path}", self.url)])
    }

    /// POSTs `body` as the API server does; returns the status and the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(self.client.as_ref(), path, body)
    }

    /// POSTs `body` as any other client in the cluster could: without a client certificate.
    pub fn post_without_certificate(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(None, path, body)
    }

    fn post_as(&self, client: Option<&(PathBuf, PathBuf)>, path: &str, body: &Value) -> (u16, Value) {
        let file = self.dir.path().join(format!("review-{}.json", fastrand::u64(..)));
        std::fs::write(&file, body.to_string()).unwrap();
        let (code, text) = self.curl_as(
            client,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &format!("@{}", file.display()),
                &format!("{}{path}?timeout=10s", self.url),
            ],
        );
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
