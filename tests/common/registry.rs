//! Debian's docker-registry (plain, TLS with basic auth, or bearer tokens from our token server)
//! with images pushed by the test.

use super::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Debian's docker-registry (CNCF distribution) on a free loopback port.
pub struct Registry {
    pub _procs: Vec<Proc>,
    pub _dir: tempfile::TempDir,
    pub host: String,
    pub base: String,
    pub push_args: Vec<String>,
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

    pub fn start(auth: Option<(&str, &str)>, bearer: bool) -> Registry {
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
        procs.push(Proc::new(
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
pub fn token_server(dir: &Path, cert: &Path, key: &Path, user: &str, password: &str, procs: &mut Vec<Proc>) -> String {
    std::fs::copy(cert, dir.join("tls.crt")).unwrap();
    std::fs::copy(key, dir.join("tls.key")).unwrap();
    openssl(
        dir,
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=token-signer", "-keyout", "signer.key", "-out", "signer.crt"],
    );
    let script = fixtures().join("registry_token.py");
    let child = Command::new("python3").arg(script).arg(dir).args([user, password, "test-issuer", "test-registry"]).stdin(Stdio::null()).spawn();
    procs.push(Proc::new(child.expect("python3")));
    let portfile = dir.join("token.port");
    assert!(busy_wait(Duration::from_secs(10), || portfile.exists()), "the token server did not start");
    let port = std::fs::read_to_string(portfile).unwrap();
    format!(
        "auth:\n  token:\n    realm: https://127.0.0.1:{port}/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
        dir.join("signer.crt").display()
    )
}
