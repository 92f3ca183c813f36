//! The images we ship, in a real container runtime (Debian's podman with runc): built by
//! scripts/images.sh from the Dockerfile's stages (the test command runs it first); vault-env as
//! a Dockerfile ENTRYPOINT and as PID 1 in daemon mode; the webhook's init-container shape with
//! two containers and a memory volume; the webhook image itself. Containers use the host's
//! network namespace (`--network host`) to reach OpenBao and MariaDB on loopback. A container
//! that cannot start fails the test: there is no skip.

use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const VAULT_ENV_IMAGE: &str = "localhost/vault-env:test";
const WEBHOOK_IMAGE: &str = "localhost/vault-secrets-webhook:test";
const BASE_IMAGE: &str = "localhost/vault-env-test-base:test";

/// `podman ARGS` with the runtime this machine needs.
fn podman(args: &[&str]) -> Output {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]).args(args).stdin(Stdio::null());
    run_with_timeout(cmd, Duration::from_secs(120))
}

fn must(args: &[&str]) -> String {
    let out = podman(args);
    assert_eq!(out.code, Some(0), "podman {args:?}: {}", out.all());
    out.stdout.trim().to_string()
}

/// `podman run` options every container here needs (explicit limits: the runtime cannot set
/// them itself on this machine).
const RUN: [&str; 6] = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "host"];

/// A container of ours, removed (by its name) when dropped.
struct Container(String);

impl Container {
    fn start(options: &[&str], image: &str, args: &[&str]) -> Container {
        let name = format!("vault-env-test-{}", fastrand::u64(..));
        let mut all = vec!["run", "-d", "--name", name.as_str()];
        all.extend(RUN);
        all.extend_from_slice(options);
        all.push(image);
        all.extend_from_slice(args);
        must(&all);
        Container(name)
    }

    fn logs(&self) -> String {
        podman(&["logs", &self.0]).all()
    }

    fn wait_for_log(&self, needle: &str) -> bool {
        busy_wait(Duration::from_secs(30), || self.logs().contains(needle))
    }

    fn exit_code(&self) -> String {
        must(&["inspect", "--format", "{{.State.ExitCode}}", &self.0])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

/// An app image as users write one: `FROM` a base, vault-env copied from our image, as the
/// ENTRYPOINT in front of the app's script.
fn app_image(script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.sh"), script).unwrap();
    std::fs::write(
        dir.path().join("Containerfile"),
        format!(
            "FROM {BASE_IMAGE}\nCOPY --from={VAULT_ENV_IMAGE} /usr/local/bin/vault-env /usr/local/bin/vault-env\nCOPY app.sh /app.sh\n\
             ENTRYPOINT [\"/usr/local/bin/vault-env\"]\nCMD [\"/bin/sh\", \"/app.sh\"]\n"
        ),
    )
    .unwrap();
    let tag = format!("localhost/vault-env-test-app:{}", fastrand::u64(..));
    must(&["build", "-q", "-t", &tag, dir.path().to_str().unwrap()]);
    tag
}

struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

/// The images exist (scripts/images.sh builds them; the test command runs it).
fn images_built() {
    for image in [VAULT_ENV_IMAGE, WEBHOOK_IMAGE, BASE_IMAGE] {
        let out = podman(&["image", "exists", image]);
        assert_eq!(out.code, Some(0), "{image} is missing: run scripts/images.sh (scripts/test.sh does): {}", out.all());
    }
}

/// As a Dockerfile ENTRYPOINT, in exec mode: the app gets its values, also with a read-only root
/// filesystem and a non-root user; a missing secret stops it with vault-env's exit code.
#[test]
fn vault_env_as_a_dockerfile_entrypoint() {
    images_built();
    let bao = Bao::dev();
    bao.kv2("app", json!({"password": "in-a-container"}));
    let image = Image(app_image("echo \"password=$PASSWORD uid=$(id -u)\"\n"));
    let env = ["-e", "VAULT_TOKEN=root", "-e", "PASSWORD=vault:secret/data/app#password"];
    let addr = format!("VAULT_ADDR={}", bao.addr);
    let mut args = vec!["run", "--rm"];
    args.extend(RUN);
    args.extend(["-e", addr.as_str(), "--read-only", "--user", "65534:65534"]);
    args.extend(env);
    args.push(&image.0);
    let out = podman(&args);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "password=in-a-container uid=65534"), "{}", out.all());
    assert!(!out.stderr.contains("in-a-container"), "{}", out.stderr);

    let mut missing = vec!["run", "--rm"];
    missing.extend(RUN);
    missing.extend(["-e", addr.as_str(), "-e", "VAULT_TOKEN=root", "-e", "PASSWORD=vault:secret/data/nothing#password", &image.0]);
    let out = podman(&missing);
    assert_eq!(out.code, Some(65), "{}", out.all());
    assert!(out.stderr.contains("PASSWORD") && out.stderr.contains("secret/data/nothing"), "{}", out.stderr);
}

/// Daemon mode as the container's PID 1 with database leases: a signal sent to the container
/// reaches the app, orphans are reaped, `podman stop` gives the app's exit code, and the leases
/// are revoked.
#[test]
fn vault_env_as_pid_1_in_daemon_mode() {
    images_built();
    let db = MariaDb::start();
    let bao = Bao::dev();
    database_engine(&bao, &db, "10m", "1h");
    let script = "trap 'echo app got USR1' USR1\ntrap 'echo app got TERM; exit 42' TERM\n\
                  echo \"user=$DB_USER\"\n( sleep 0.2 & )\nwhile true; do sleep 0.1; done\n";
    let image = Image(app_image(script));
    let addr = format!("VAULT_ADDR={}", bao.addr);
    let options =
        ["-e", &addr, "-e", "VAULT_TOKEN=root", "-e", "VAULT_ENV_DAEMON=true", "-e", "DB_USER=vault:database/creds/app#username", "--read-only"];
    let app = Container::start(&options, &image.0, &[]);
    assert!(app.wait_for_log("user=v-"), "{}", app.logs());
    let (_, leases) = bao.try_api("LIST", "sys/leases/lookup/database/creds/app", None);
    assert_eq!(leases["data"]["keys"].as_array().map(Vec::len), Some(1), "{leases}");

    must(&["kill", "-s", "USR1", &app.0]);
    assert!(app.wait_for_log("app got USR1"), "{}", app.logs());
    // The orphaned `sleep 0.2` was re-parented to vault-env (PID 1) and reaped: no zombie.
    std::thread::sleep(Duration::from_millis(600));
    let ps = must(&["exec", &app.0, "ps", "-o", "pid,stat,comm"]);
    assert!(!ps.lines().skip(1).any(|l| l.split_whitespace().nth(1).is_some_and(|s| s.starts_with('Z'))), "{ps}");
    assert!(ps.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains("vault-env")), "vault-env is PID 1: {ps}");

    must(&["stop", "-t", "10", &app.0]);
    assert_eq!(app.exit_code(), "42", "{}", app.logs());
    assert!(app.logs().contains("app got TERM"), "{}", app.logs());
    let (_, leases) = bao.try_api("LIST", "sys/leases/lookup/database/creds/app", None);
    assert!(leases["data"]["keys"].as_array().is_none_or(Vec::is_empty), "leases left: {leases}");
}

/// `podman run -it`: one Ctrl-C reaches the app once (the terminal signals the whole foreground
/// group; vault-env does not forward it a second time), and the app's exit code comes back.
#[test]
fn one_ctrl_c_at_a_terminal() {
    images_built();
    let script = "n=0\ntrap 'n=$((n+1)); echo \"INT $n\"' INT\necho ready\nwhile [ $n -lt 1 ]; do sleep 0.1; done\n\
                  sleep 1\necho \"ints=$n\"\nexit 3\n";
    let image = Image(app_image(script));
    let driver = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("podman", sys.argv[1:])
out, sent, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
    if b"ready" in out and not sent:
        time.sleep(0.3)
        os.write(fd, b"\x03")
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", driver, "podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "run", "-it", "--rm"]).args(RUN).args([
        "-e",
        "VAULT_ENV_DAEMON=true",
        &image.0,
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(90));
    assert!(out.stdout.contains("ints=1"), "{}", out.all());
    assert_eq!(out.code, Some(3), "{}", out.all());
}

/// The pod the webhook makes, with two containers: our image's `vault-env --copy-to /vault/` (the
/// injected init container) fills a memory volume; the app container runs `/vault/vault-env` from
/// it with the command and env the webhook wrote, and logs in with its service-account token.
#[test]
fn the_webhooks_init_container_and_app_container() {
    images_built();
    let dir = tempfile::tempdir().unwrap();
    let (bao, jwt) = crate::agent::vault_for_the_pod(dir.path());
    let pod = crate::agent::mutated_pod(&bao, json!({}));
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "copy-vault-env", "{pod}");
    let volume = format!("vault-env-test-{}", fastrand::u64(..));
    must(&["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", &volume]);
    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = podman(&["volume", "rm", "-f", &self.0]);
        }
    }
    let volume = Volume(volume);
    let mount = format!("{}:/vault", volume.0);
    // A tmpfs volume lives while a container uses it: this one holds it for the pod's lifetime,
    // as a pod's infra container does.
    let _pod = Container::start(&["-v", &mount], BASE_IMAGE, &["sleep", "300"]);

    // The init container: the image's binary with the injected command, as the pod's user.
    let command: Vec<&str> = init["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let mut run = vec!["run", "--rm"];
    run.extend(RUN);
    run.extend(["-v", mount.as_str(), "--user", "0", "--entrypoint", command[0], VAULT_ENV_IMAGE]);
    run.extend(&command[1..]);
    let out = podman(&run);
    assert_eq!(out.code, Some(0), "{}", out.all());

    // The app container: its env as the webhook wrote it, the service-account token mounted.
    let token_dir = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&token_dir).unwrap();
    std::fs::write(token_dir.join("token"), &jwt).unwrap();
    let app = &pod["spec"]["containers"][0];
    assert_eq!(app["command"], json!(["/vault/vault-env"]));
    let env: Vec<String> =
        app["env"].as_array().unwrap().iter().map(|e| format!("{}={}", e["name"].as_str().unwrap(), e["value"].as_str().unwrap_or(""))).collect();
    let sa = format!("{}:/var/run/secrets/kubernetes.io/serviceaccount:ro", token_dir.display());
    // /vault/ as the webhook mounts it in the app: read-only (the app cannot replace the binary
    // the other containers run).
    let vault_mount = app["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "vault-env").unwrap();
    assert_eq!(vault_mount["readOnly"], true, "{app}");
    let app_mount = format!("{mount}:ro");
    let mut run = vec!["run", "--rm"];
    run.extend(RUN);
    run.extend(["-v", app_mount.as_str(), "-v", sa.as_str(), "--read-only", "--entrypoint", "/vault/vault-env"]);
    for e in &env {
        run.extend(["-e", e.as_str()]);
    }
    run.extend([BASE_IMAGE, "/bin/sh", "-c", "echo password=$PASSWORD; echo x > /vault/vault-env || echo not-replaced"]);
    let out = podman(&run);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "password=rendered-by-the-agent\nnot-replaced"), "{}", out.all());
}

/// The webhook image: as user 65534 with its certificate mounted, it answers an AdmissionReview
/// over HTTPS, serves a replaced certificate without a restart, and stops cleanly.
#[test]
fn the_webhook_image_serves_reloads_and_stops() {
    images_built();
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let (ca, _, _) = ca_and_cert(&tls, "webhook", "IP:127.0.0.1");
    for f in ["webhook.crt", "webhook.key"] {
        std::fs::set_permissions(tls.join(f), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let port = free_port();
    let listen = format!("LISTEN_ADDRESS=127.0.0.1:{port}");
    let mount = format!("{}:/tls:ro", tls.display());
    let options = [
        "-v",
        &mount,
        "-e",
        &listen,
        "-e",
        "TLS_CERT_FILE=/tls/webhook.crt",
        "-e",
        "TLS_PRIVATE_KEY_FILE=/tls/webhook.key",
        "-e",
        "TLS_RELOAD_INTERVAL=200ms",
        "-e",
        "VAULT_ADDR=https://vault.vault:8200",
    ];
    let hook = Container::start(&options, WEBHOOK_IMAGE, &[]);
    assert_eq!(must(&["inspect", "--format", "{{.Config.User}}", &hook.0]), "65534:65534");
    let url = format!("https://127.0.0.1:{port}");
    let curl = |ca: &Path, path: &str, body: Option<&Value>| -> (String, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--cacert"]).arg(ca).args(["-o", "-", "-w", "\n%{http_code}", &format!("{url}{path}")]);
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", &body.to_string()]);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_string(), body.to_string())
    };
    assert!(busy_wait(Duration::from_secs(30), || curl(&ca, "/healthz", None).0 == "200"), "{}", hook.logs());
    let (code, answer) = curl(&ca, "/pods", Some(&fixture("pod-create-review.json")));
    assert_eq!(code, "200", "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["response"]["allowed"], json!(true), "{answer}");
    assert!(answer["response"]["patch"].is_string(), "{answer}");

    // A new CA and certificate in place of the old: served without a restart.
    let renewed = dir.path().join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    let (new_ca, cert, key) = ca_and_cert(&renewed, "webhook", "IP:127.0.0.1");
    for (from, to) in [(cert, "webhook.crt"), (key, "webhook.key")] {
        std::fs::copy(&from, tls.join(format!("{to}.new"))).unwrap();
        std::fs::set_permissions(tls.join(format!("{to}.new")), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    std::fs::rename(tls.join("webhook.key.new"), tls.join("webhook.key")).unwrap();
    std::fs::rename(tls.join("webhook.crt.new"), tls.join("webhook.crt")).unwrap();
    assert!(busy_wait(Duration::from_secs(15), || curl(&new_ca, "/healthz", None).0 == "200"), "not reloaded: {}", hook.logs());

    let started = std::time::Instant::now();
    must(&["stop", "-t", "10", &hook.0]);
    assert!(started.elapsed() < Duration::from_secs(8), "stopped by SIGKILL? {:?}", started.elapsed());
    assert_eq!(hook.exit_code(), "0", "{}", hook.logs());
}

/// What a 64-bit little-endian ELF file is: "static PIE" (ET_DYN with no program interpreter),
/// "dynamically linked" (one is named), "fixed address" (ET_EXEC) or something else.
fn elf_kind(bytes: &[u8]) -> String {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56) as usize);
    let interpreter = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3); // PT_INTERP
    match (u16_at(16), interpreter) {
        (3, false) => "static PIE".into(),
        (3, true) | (2, true) => "dynamically linked".into(),
        (2, false) => "fixed address".into(),
        (kind, _) => format!("ELF type {kind}"),
    }
}

/// Both images as published: one image index per program (scripts/images.sh: `TAG-multiarch`)
/// with linux/amd64 and linux/arm64, pushed to a registry on loopback and read back as a node of
/// either kind pulls them: each platform's manifest, its config (architecture, entrypoint, user),
/// and the binary in its layer, which is built for that machine; the arm64 one runs (under
/// qemu-aarch64-static).
#[test]
fn both_images_are_published_for_amd64_and_arm64() {
    let registry = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    for program in ["vault-env", "vault-secrets-webhook"] {
        let reference = format!("{}/{program}:multi", registry.host);
        must(&["manifest", "push", "--all", "--tls-verify=false", &format!("localhost/{program}:test-multiarch"), &format!("docker://{reference}")]);
        let get = |path: &str, accept: &str| -> Vec<u8> {
            let out = Command::new("curl")
                .args(["-fsS", "-H", &format!("Accept: {accept}"), &format!("{}/v2/{program}/{path}", registry.base)])
                .output()
                .unwrap();
            assert!(out.status.success(), "GET {path}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        let index: Value = serde_json::from_slice(&get(
            "manifests/multi",
            "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json",
        ))
        .unwrap();
        let mut platforms = Vec::new();
        for entry in index["manifests"].as_array().expect("an image index") {
            let (os, arch) = (entry["platform"]["os"].as_str().unwrap(), entry["platform"]["architecture"].as_str().unwrap());
            platforms.push(format!("{os}/{arch}"));
            let digest = entry["digest"].as_str().unwrap();
            let manifest: Value = serde_json::from_slice(&get(
                &format!("manifests/{digest}"),
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            ))
            .unwrap();
            let config: Value = serde_json::from_slice(&get(&format!("blobs/{}", manifest["config"]["digest"].as_str().unwrap()), "*/*")).unwrap();
            assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some(os), Some(arch)), "{config}");
            assert_eq!(config["config"]["Entrypoint"], json!([format!("/usr/local/bin/{program}")]), "{config}");
            assert_eq!(config["config"]["User"], "65534:65534", "{config}");
            // The binary in the image's layers, for this machine (ELF e_machine: 62 x86-64, 183 aarch64).
            let binary = dir.path().join(format!("{program}-{arch}"));
            for layer in manifest["layers"].as_array().unwrap() {
                let blob = dir.path().join("layer.tar.gz");
                std::fs::write(&blob, get(&format!("blobs/{}", layer["digest"].as_str().unwrap()), "*/*")).unwrap();
                let member = format!("usr/local/bin/{program}");
                let out = Command::new("tar").arg("-xzOf").arg(&blob).arg(&member).output().unwrap();
                if out.status.success() && !out.stdout.is_empty() {
                    std::fs::write(&binary, &out.stdout).unwrap();
                }
            }
            let bytes = std::fs::read(&binary).unwrap_or_else(|_| panic!("no {program} in the {arch} image's layers"));
            let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
            assert_eq!(machine, if arch == "amd64" { 62 } else { 183 }, "{program} for {arch}");
            // A static PIE on both machines, so ASLR moves its code and data (rustc links arm64's
            // musl programs at a fixed address unless scripts/link/rust-lld makes them PIE).
            assert_eq!(elf_kind(&bytes), "static PIE", "{program} for {arch}");
            println!("{program} linux/{arch}: binary {} bytes", bytes.len());
            if arch == "arm64" && program == "vault-env" {
                std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
                let out =
                    Command::new("qemu-aarch64-static").arg(&binary).arg("--version").output().expect("qemu-aarch64-static (scripts/install.sh)");
                assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("vault-env "), "{out:?}");
            }
        }
        platforms.sort();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    }
}
