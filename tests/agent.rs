//! vault-agent with the pod's own configuration (`vault-agent-configmap`), proven with the real
//! program: the webhook mutates a pod, and the injected agent's command line (its `args` or
//! `command`, env and mounts, with each mount mapped to a local directory) runs here as OpenBao's
//! `bao agent`, which reads Vault agent configuration. It logs in through a `kubernetes`-path
//! mount with a service-account JWT, renders the ConfigMap's template into the shared memory
//! volume, and (as an init container) sinks the token that vault-env then uses.

use crate::common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The user's agent configuration, as it would be in the ConfigMap: container paths only.
const AGENT_CONFIG: &str = r#"
pid_file = "/tmp/vault-agent.pid"
auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config = {
      role = "app"
      token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    }
  }
  sink "file" { config = { path = "/vault/.vault-token" } }
}
template {
  contents = "password={{ with secret \"secret/data/app\" }}{{ .Data.data.password }}{{ end }}\n"
  destination = "/vault/secrets/app.properties"
}
"#;

/// OpenBao with the app's secret, and a JWT mount at `auth/kubernetes` that accepts the pod's
/// service-account token (role `app`, bound to `shop/app`).
pub(crate) fn vault_for_the_pod(dir: &Path) -> (Bao, String) {
    let bao = Bao::dev();
    bao.kv2("app", json!({"password": "rendered-by-the-agent"}));
    bao.policy("app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    let (key, public) = jwt_keypair(dir);
    bao.enable_auth("kubernetes", "jwt");
    bao.api("POST", "auth/kubernetes/config", Some(json!({"jwt_validation_pubkeys": [public]})));
    bao.api(
        "POST",
        "auth/kubernetes/role/app",
        Some(json!({"role_type": "jwt", "user_claim": "sub", "bound_subject": "system:serviceaccount:shop:app",
                    "bound_audiences": ["https://kubernetes.default.svc"], "token_policies": ["app"], "token_ttl": "10m"})),
    );
    (bao, mint_sa_jwt(&key, "shop", "app", "https://kubernetes.default.svc", 600))
}

/// The pod after our webhook, with `annotations`.
pub(crate) fn mutated_pod(bao: &Bao, annotations: Value) -> Value {
    let hook = Webhook::start(&[("VAULT_ADDR", &bao.addr)]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "shop", "annotations": annotations},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app", "image": "app:1", "command": ["/bin/sh", "-c", "cat /vault/secrets/app.properties"],
            "env": [{"name": "PASSWORD", "value": "vault:secret/data/app#password"}],
            "volumeMounts": [{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}]}});
    let mut review = fixture("pod-create-review.json");
    review["request"]["object"] = pod;
    review["request"]["namespace"] = json!("shop");
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}");
    apply(&review, &answer).expect("a patch")
}

/// A pod's volumes on this machine: each volume a directory under `root`; a ConfigMap volume
/// holds the agent configuration above.
struct Volumes {
    root: PathBuf,
    /// (container path, local path), longest first.
    map: Vec<(String, PathBuf)>,
}

impl Volumes {
    fn for_container(root: &Path, container: &Value, jwt: &str) -> Volumes {
        let mut map = Vec::new();
        for m in container["volumeMounts"].as_array().into_iter().flatten() {
            let (name, path) = (m["name"].as_str().unwrap(), m["mountPath"].as_str().unwrap());
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let local = match m["subPath"].as_str() {
                Some(sub) => dir.join(sub),
                None => dir,
            };
            if name.starts_with("kube-api-access") {
                std::fs::write(local.join("token"), jwt).unwrap();
            }
            map.push((path.trim_end_matches('/').to_string(), local));
        }
        map.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let volumes = Volumes { root: root.to_path_buf(), map };
        let config = volumes.local(AGENT_CONFIG);
        for name in ["agent-configmap", "vault-agent-config"] {
            std::fs::create_dir_all(root.join(name)).unwrap();
            std::fs::write(root.join(name).join("config.hcl"), &config).unwrap();
        }
        volumes
    }

    /// `text` with every absolute container path under a mount replaced by its local path, in
    /// one pass (a replaced path is not looked at again): the longest mount that a path starts
    /// with, at a path boundary.
    fn local(&self, text: &str) -> String {
        let text = text.replace("/tmp/vault-agent.pid", &self.root.join("agent.pid").display().to_string());
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        let mut previous = ' ';
        while let Some(c) = rest.chars().next() {
            let starts_path = c == '/' && matches!(previous, ' ' | '=' | '"' | '\n' | '\'' | ':');
            let found = starts_path
                .then(|| {
                    self.map.iter().find(|(path, _)| {
                        rest.starts_with(path.as_str()) && rest[path.len()..].chars().next().is_none_or(|n| matches!(n, '/' | '"' | ' ' | '\n'))
                    })
                })
                .flatten();
            match found {
                Some((path, local)) => {
                    out.push_str(&local.display().to_string());
                    rest = &rest[path.len()..];
                    previous = 'x';
                }
                None => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                    previous = c;
                }
            }
        }
        out
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// The container's command line and env, run here: its `command` (where `vault` is `bao`, also
/// on `PATH` for a shell), or its `args` after `entrypoint` (the image's).
fn container_command(container: &Value, volumes: &Volumes, entrypoint: &Path) -> Command {
    let local = |list: &Value| -> Vec<String> { list.as_array().into_iter().flatten().map(|a| volumes.local(a.as_str().unwrap())).collect() };
    let bin = volumes.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(bao_bin(), bin.join("vault"));
    let mut cmd = match local(&container["command"]).split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(if program == "vault" { bao_bin() } else { Path::new(program) });
            cmd.args(rest);
            cmd
        }
        None => Command::new(entrypoint),
    };
    cmd.args(local(&container["args"]));
    cmd.env_clear().env("PATH", format!("{}:/usr/bin:/bin", bin.display())).env("HOME", volumes.root.as_path());
    for e in container["env"].as_array().into_iter().flatten() {
        cmd.env(e["name"].as_str().unwrap(), volumes.local(e["value"].as_str().unwrap_or("")));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// [`container_command`] for the vault image, whose entrypoint runs `vault ARGS`.
fn agent_command(container: &Value, volumes: &Volumes) -> Command {
    container_command(container, volumes, bao_bin())
}

/// Case C: `vault-agent-configmap` alone: the agent sidecar renders the template into the
/// volume every app container mounts.
#[test]
fn the_agent_sidecar_renders_the_configmaps_template() {
    let dir = tempfile::tempdir().unwrap();
    let (bao, jwt) = vault_for_the_pod(dir.path());
    let pod = mutated_pod(&bao, json!({"vault.security.banzaicloud.io/vault-agent-configmap": "agent-config"}));
    let sidecar = &pod["spec"]["containers"][0];
    assert_eq!(sidecar["name"], "vault-agent", "{pod}");
    let volumes = Volumes::for_container(&dir.path().join("volumes"), sidecar, &jwt);
    let agent = Proc::new(agent_command(sidecar, &volumes).spawn().expect("bao agent"));
    let rendered = volumes.dir("agent-secrets").join("app.properties");
    let ok = busy_wait(Duration::from_secs(20), || std::fs::read_to_string(&rendered).is_ok_and(|t| !t.is_empty()));
    drop(agent);
    assert!(ok, "nothing rendered at {}", rendered.display());
    assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "password=rendered-by-the-agent\n");
    // The app container mounts that volume where the template wrote.
    let app = &pod["spec"]["containers"][1];
    assert!(app["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == "agent-secrets" && m["mountPath"] == "/vault/secrets"), "{app}");
}

/// Case D: `vault-agent-configmap` with `vault-agent: "true"`: the init agent logs in, sinks its
/// token, and exits; vault-env in the app container then resolves with that token
/// (`VAULT_TOKEN_FILE`), without a login of its own.
#[test]
fn the_init_agent_logs_in_for_vault_env() {
    let dir = tempfile::tempdir().unwrap();
    let (bao, jwt) = vault_for_the_pod(dir.path());
    let pod = mutated_pod(
        &bao,
        json!({"vault.security.banzaicloud.io/vault-agent-configmap": "agent-config", "vault.security.banzaicloud.io/vault-agent": "true"}),
    );
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "vault-agent", "{pod}");
    let volumes = Volumes::for_container(&dir.path().join("volumes"), init, &jwt);
    let out = run_with_timeout(agent_command(init, &volumes), Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "the init agent exits after its login: {}", out.all());
    let token = std::fs::read_to_string(volumes.dir("vault-env").join(".vault-token")).expect("the token sink");
    assert!(!token.trim().is_empty());

    app_resolves_with_the_agents_token(&pod["spec"]["containers"][0], &volumes, &bao, "rendered-by-the-agent", "vault-env");
}

/// The app container as mutated: vault-env, with `VAULT_TOKEN_FILE` pointing at the agent's sink,
/// resolves `PASSWORD` to `expected` with that token, without a login of its own.
fn app_resolves_with_the_agents_token(app: &Value, volumes: &Volumes, bao: &Bao, expected: &str, sink_volume: &str) {
    let env: Vec<(String, String)> = app["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), volumes.local(e["value"].as_str().unwrap_or(""))))
        .collect();
    assert!(env.iter().any(|(k, v)| k == "VAULT_TOKEN_FILE" && v.ends_with(&format!("{sink_volume}/.vault-token"))), "{env:?}");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).filter(|(k, _)| *k != "VAULT_ADDR").collect();
    env.push(("VAULT_ADDR", &bao.addr));
    let out = vault_env(&env, &["sh", "-c", "echo \"$PASSWORD\""]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), expected), "{}", out.all());
    assert!(!out.stderr.contains("logged in"), "vault-env used the agent's token: {}", out.stderr);
}

/// consul-template's configuration, as it would be in the user's ConfigMap (`vault-ct-configmap`).
fn ct_config() -> String {
    template_stanza("password=", "secret/data/app", "password", "/vault/secrets/app.properties")
}

/// Case B: `vault-ct-configmap` (with `vault-ct-once`): the login agent, with the configuration
/// the webhook passes in its env, logs in through OpenBao's kubernetes auth with a token from the
/// real TokenRequest API, which OpenBao checks with the API server's TokenReview, and sinks the
/// token in a volume of its own; consul-template, built from its Go module, finds it as
/// `~/.vault-token` and renders the ConfigMap's template into the volume the app mounts. With
/// `vault-agent: "true"` (case A) vault-env in the app uses that token too.
#[test]
fn consul_template_renders_with_the_login_agents_token() {
    let cluster = Cluster::start();
    let bao = Bao::dev();
    bao.kv2("app", json!({"password": "rendered-by-consul-template"}));
    bao.policy("app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    cluster.kubernetes_auth(&bao, "app");
    let jwt = cluster.token("shop", "app", &["https://kubernetes.default.svc.cluster.local"]);

    let a = |key: &str| format!("vault.security.banzaicloud.io/{key}");
    let pod = mutated_pod(&bao, json!({a("vault-ct-configmap"): "ct-config", a("vault-ct-once"): "true", a("vault-agent"): "true"}));
    let inits = &pod["spec"]["initContainers"];
    assert_eq!((inits[0]["name"].as_str(), inits[2]["name"].as_str()), (Some("vault-agent"), Some("consul-template")), "{pod}");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("volumes");

    let login = &inits[0];
    let volumes = Volumes::for_container(&root, login, &jwt);
    let out = run_with_timeout(agent_command(login, &volumes), Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "the login agent exits after its login: {}", out.all());
    let token = std::fs::read_to_string(volumes.dir("vault-agent-token").join(".vault-token")).expect("the token sink, in a volume of its own");
    assert!(!token.trim().is_empty());
    assert!(!out.all().contains(token.trim()), "the token is not logged");
    assert!(!volumes.dir("vault-env").join(".vault-token").exists(), "not in /vault/, which every app container mounts");

    let ct = &inits[2];
    let volumes = Volumes::for_container(&root, ct, &jwt);
    std::fs::write(volumes.dir("ct-configmap").join("config.hcl"), volumes.local(&ct_config())).unwrap();
    let out = run_with_timeout(container_command(ct, &volumes, &go_tool("consul-template")), Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "consul-template -once: {}", out.all());
    let rendered = std::fs::read_to_string(volumes.dir("ct-secrets").join("app.properties")).expect("the rendered file");
    assert_eq!(rendered, "password=rendered-by-consul-template\n");
    // The app container mounts that volume where the template wrote.
    let app = &pod["spec"]["containers"][0];
    assert!(app["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == "ct-secrets" && m["mountPath"] == "/vault/secrets"), "{app}");
    let volumes = Volumes::for_container(&root, app, &jwt);
    app_resolves_with_the_agents_token(app, &volumes, &bao, "rendered-by-consul-template", "vault-agent-token");
}
