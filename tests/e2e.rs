//! End to end, on a real node (tests/common/node.rs): the API server calls our webhook, the
//! scheduler places the pod, the kubelet runs the copy init container into a memory volume, mounts
//! the projected ServiceAccount token, enforces the securityContext, and delivers SIGTERM on
//! delete; vault-env in the pod logs in to OpenBao with that token (kubernetes auth, TokenReview
//! against the same API server). Pods use the host's network (the node's CNI gives pods only
//! `lo`), so OpenBao and MariaDB run on 127.0.0.1 as in the other tests.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

/// OpenBao with `secret/data/mysql` and the kubernetes auth role `default` for the ServiceAccount
/// `default` of `namespace` (the webhook's default role is the pod's ServiceAccount).
fn bao_for(node: &Node, namespace: &str) -> Bao {
    let bao = Bao::dev();
    bao.kv2("mysql", json!({"MYSQL_PASSWORD": "pw-from-openbao", "MYSQL_ROOT_PASSWORD": "root-pw-from-openbao"}));
    bao.policy("mysql", r#"path "secret/data/mysql" { capabilities = ["read"] }"#);
    node.kubernetes_auth(&bao);
    bao.api(
        "POST",
        "auth/kubernetes/role/default",
        Some(json!({"bound_service_account_names": ["default"], "bound_service_account_namespaces": [namespace],
                    "token_policies": ["mysql"], "ttl": "10m"})),
    );
    bao
}

/// What most tests start with: the node, a namespace `e2e-NAME`, OpenBao for it ([`bao_for`]) and
/// our webhook (its VAULT_ADDR that OpenBao, then `env`) registered for it.
fn scene(name: &str, env: &[(&str, &str)]) -> (&'static Node, Namespace, Bao, Webhook) {
    let node = node();
    let ns = node.namespace(name, json!({}));
    let bao = bao_for(node, &ns.name);
    let all: Vec<(&str, &str)> = [("VAULT_ADDR", bao.addr.as_str())].into_iter().chain(env.iter().copied()).collect();
    let hook = ns.start_webhook(&all);
    (node, ns, bao, hook)
}

/// The pod of the Deployment `app` once it is Available and its app has printed what it shows:
/// the pod, its name and the app's log.
fn shown(ns: &Namespace, app: &str) -> (Value, String, String) {
    ns.wait_available(app, MINUTE);
    let pod = ns.pods(&format!("app={app}")).pop().expect("a pod");
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let log = ns.wait_log(&name, "app", "shown", MINUTE);
    (pod, name, log)
}

/// A Deployment of one hostNetwork pod labelled `app=NAME` running `script` in busybox.
fn deployment(name: &str, annotations: Value, pod_spec: Value, env: Value, script: &str) -> Value {
    let mut spec = json!({
        "hostNetwork": true,
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", script], "env": env}],
    });
    json_merge(&mut spec, pod_spec);
    json!({"metadata": {"name": name}, "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}, "annotations": annotations}, "spec": spec}}})
}

fn json_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// The app prints what it was given and its identity, then sleeps (Ready while it runs).
const SHOW: &str = "echo \"MYSQL_PASSWORD=$MYSQL_PASSWORD\"; echo \"VAULT_TOKEN=${VAULT_TOKEN:-unset}\"; echo \"id=$(id -u):$(id -g)\"; \
                    echo shown; trap 'echo got-SIGTERM; exit 0' TERM; while :; do sleep 1; done";

fn mysql_env() -> Value {
    json!([{"name": "MYSQL_PASSWORD", "value": "vault:secret/data/mysql#MYSQL_PASSWORD"}])
}

/// The seed's MySQL release pattern and Bank-Vaults' e2e `deployment`: a Deployment whose env
/// holds a `vault:` reference, with `vault-addr` and `vault-skip-verify` annotations, becomes
/// Available; the kubelet ran the copy init container into a memory volume; the app sees the
/// value from OpenBao (vault-env logged in with the pod's projected token), never a token; the
/// stored pod holds only the reference.
#[test]
fn a_mutated_deployment_becomes_available_and_its_app_sees_the_secret() {
    // The webhook's own VAULT_ADDR is not the one the pods use: their annotation is.
    let (node, ns, bao, _hook) = scene("deployment", &[("VAULT_ADDR", "https://vault.invalid:8200")]);
    let annotations = json!({"vault.security.banzaicloud.io/vault-addr": bao.addr, "vault.security.banzaicloud.io/vault-skip-verify": "true"});
    ns.create("deployments", &deployment("mysql", annotations, json!({}), mysql_env(), SHOW));
    let (pod, name, log) = shown(&ns, "mysql");
    let name = name.as_str();
    assert!(log.contains("MYSQL_PASSWORD=pw-from-openbao\n"), "{log}");
    assert!(log.contains("VAULT_TOKEN=unset\n"), "{log}");
    assert!(log.contains("logged in to Vault"), "vault-env logged in with the pod's token: {log}");
    // What the kubelet ran: the copy into a memory volume, then the app under vault-env.
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "copy-vault-env", "{pod}");
    assert_eq!(pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"], 0, "{}", pod["status"]);
    let volume = pod["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "vault-env").cloned().unwrap_or_default();
    assert_eq!(volume["emptyDir"]["medium"], "Memory", "{pod}");
    assert_eq!(pod["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]), "{pod}");
    // etcd has the reference, not the value.
    assert!(!pod.to_string().contains("pw-from-openbao"), "{pod}");
    let mounts = node.kubectl(&["exec", "-n", &ns.name, name, "-c", "app", "--", "cat", "/proc/mounts"]);
    assert!(mounts.stdout.lines().any(|l| l.starts_with("tmpfs /vault ")), "/vault is not a tmpfs:\n{}", mounts.all());
}

/// Bank-Vaults' e2e `deployment-seccontext` and its init-seccontext case: the pod's own
/// securityContext (non-root user and group, no privilege escalation, all capabilities dropped,
/// a read-only root) is enforced by the kubelet on the injected containers too; and the
/// `run-as-user`/`run-as-group`/`run-as-non-root`/`readonly-root-fs` annotations shape the copy
/// init container, which still runs.
#[test]
fn security_contexts_are_enforced_on_the_injected_containers() {
    let (node, ns, _bao, _hook) = scene("seccontext", &[]);
    let restricted = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true,
                            "seccompProfile": {"type": "RuntimeDefault"}});
    let pod_context = json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "runAsNonRoot": true}});
    let mut with_pod_context = deployment("pod-context", json!({}), pod_context, mysql_env(), SHOW);
    with_pod_context["spec"]["template"]["spec"]["containers"][0]["securityContext"] = restricted.clone();
    ns.create("deployments", &with_pod_context);
    let init_annotations = json!({
        "vault.security.banzaicloud.io/run-as-user": "1001",
        "vault.security.banzaicloud.io/run-as-group": "1002",
        "vault.security.banzaicloud.io/run-as-non-root": "true",
        "vault.security.banzaicloud.io/readonly-root-fs": "true",
    });
    let mut init_context = deployment("init-context", init_annotations, json!({}), mysql_env(), SHOW);
    init_context["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1001, "runAsGroup": 1002});
    ns.create("deployments", &init_context);
    for (app, id) in [("pod-context", "id=1000:3000"), ("init-context", "id=1001:1002")] {
        let (pod, name, log) = shown(&ns, app);
        let name = name.as_str();
        assert!(log.contains("MYSQL_PASSWORD=pw-from-openbao\n") && log.contains(id), "{app}: {log}");
        let init = &pod["spec"]["initContainers"][0];
        assert_eq!(init["name"], "copy-vault-env");
        if app == "init-context" {
            let context = &init["securityContext"];
            assert_eq!((context["runAsUser"].as_i64(), context["runAsGroup"].as_i64()), (Some(1001), Some(1002)), "{init}");
            assert_eq!((context["runAsNonRoot"].as_bool(), context["readOnlyRootFilesystem"].as_bool()), (Some(true), Some(true)), "{init}");
        }
        // The app's process really runs with no capabilities and cannot write its root.
        let check =
            node.kubectl(&["exec", "-n", &ns.name, name, "-c", "app", "--", "sh", "-c", "grep CapEff /proc/1/status; touch /x && echo wrote-root"]);
        if app == "pod-context" {
            assert!(check.stdout.contains("CapEff:\t0000000000000000"), "{}", check.all());
            assert!(!check.stdout.contains("wrote-root"), "{}", check.all());
        }
    }
}

/// Daemon mode in a pod: with `vault-env-daemon: "true"` and MariaDB dynamic credentials (ttl
/// 10 s, max_ttl 30 s), the app logs in once a second for two max TTLs with no failed login while
/// vault-env renews the lease and restarts the app inside the container with new credentials
/// (restartCount stays 0). `DELETE` of the pod: the kubelet's SIGTERM reaches the app, which
/// exits cleanly, and the lease is revoked within the grace period.
#[test]
fn daemon_mode_keeps_the_app_running_across_max_ttls_and_revokes_on_delete() {
    let node = node();
    let ns = node.namespace("daemon", json!({}));
    let bao = Bao::dev();
    let db = MariaDb::start();
    database_engine(&bao, &db, "10s", "30s");
    bao.policy(
        "db",
        r#"path "database/creds/app" { capabilities = ["read"] }
           path "sys/leases/renew" { capabilities = ["update"] }
           path "sys/leases/revoke" { capabilities = ["update"] }"#,
    );
    node.kubernetes_auth(&bao);
    bao.api(
        "POST",
        "auth/kubernetes/role/default",
        Some(json!({"bound_service_account_names": ["default"], "bound_service_account_namespaces": [ns.name], "token_policies": ["db"], "ttl": "10m"})),
    );
    let _hook = ns.start_webhook(&[("VAULT_ADDR", &bao.addr)]);
    // The app writes what it sees to a host directory: its logins and its exit, readable after the
    // pod is gone. The MariaDB client comes from the host's /usr (busybox has none).
    let out = tempfile::tempdir().unwrap();
    let app = format!(
        "trap 'echo TERM >> /out/events; exit 0' TERM; while :; do \
           if mariadb --no-defaults -h127.0.0.1 -P{} -u\"$DB_USER\" -p\"$DB_PASSWORD\" -N -e 'SELECT 1' >/dev/null 2>&1; \
           then echo \"OK $DB_USER\" >> /out/events; else echo \"FAIL $DB_USER\" >> /out/events; fi; sleep 1; done",
        db.port
    );
    let host = |name: &str, path: &str, at: &str| {
        (json!({"name": name, "hostPath": {"path": path}}), json!({"name": name, "mountPath": at, "readOnly": at != "/out"}))
    };
    let mounts = [
        host("usr", "/usr", "/usr"),
        host("lib", "/usr/lib", "/lib"),
        host("lib64", "/usr/lib64", "/lib64"),
        host("out", out.path().to_str().unwrap(), "/out"),
    ];
    let pod = json!({
        "metadata": {"name": "app", "annotations": {"vault.security.banzaicloud.io/vault-env-daemon": "true"}},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 10,
            "volumes": mounts.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
            "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", app],
                            "env": [{"name": "PATH", "value": "/usr/bin:/bin"},
                                    {"name": "DB_USER", "value": "vault:database/creds/app#username"},
                                    {"name": "DB_PASSWORD", "value": "vault:database/creds/app#password"}],
                            "volumeMounts": mounts.iter().map(|m| m.1.clone()).collect::<Vec<_>>()}]}});
    ns.create("pods", &pod);
    ns.wait_phase("app", &["Running"], MINUTE).unwrap();
    let events = || std::fs::read_to_string(out.path().join("events")).unwrap_or_default();
    assert!(busy_wait(Duration::from_secs(30), || events().contains("OK ")), "no login:\n{}\n{}", events(), ns.events());
    std::thread::sleep(Duration::from_secs(62));
    let pod = ns.get("pods", "app");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{}", pod["status"]);
    let seen = events();
    let fails: Vec<&str> = seen.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.is_empty(), "failed logins: {fails:?}\n{seen}");
    let users: std::collections::BTreeSet<&str> = seen.lines().filter_map(|l| l.strip_prefix("OK ")).collect();
    assert!(users.len() >= 3, "expected a new user at least every max TTL, saw {users:?}");
    let leases = || bao.try_api("LIST", "sys/leases/lookup/database/creds/app", None).1["data"]["keys"].as_array().map_or(0, Vec::len);
    assert!(leases() >= 1, "no lease while the app runs");

    // Delete: SIGTERM through vault-env to the app, then the lease revoked, within the grace period.
    let deleted = std::time::Instant::now();
    node.cluster.must("DELETE", &format!("{}/app", ns.path("pods")), None);
    let gone = busy_wait(Duration::from_secs(20), || node.cluster.api("GET", &format!("{}/app", ns.path("pods")), None).0 == 404);
    assert!(gone, "the pod was not deleted: {}", ns.events());
    assert!(deleted.elapsed() < Duration::from_secs(10), "termination took the whole grace period: {:?}", deleted.elapsed());
    assert_eq!(events().lines().last(), Some("TERM"), "the app did not get SIGTERM:\n{}", events());
    assert_eq!(leases(), 0, "leases left after the pod was deleted");
}

/// The chart as users install it: `helm install --wait` with the webhook running as a pod on the
/// node (hostNetwork, registered by URL on 127.0.0.1, its serving certificate generated by the
/// chart), the API server's client certificate verified (`clientAuth.caBundle`). Its Deployment
/// becomes Available through the scheduler and the controller manager; the webhook in the pod
/// reads the API with its own ServiceAccount and logs in to OpenBao with its projected token. Then
/// the seed's examples run through it: `kubectl create secret docker-registry` with `vault:`
/// credentials is stored resolved, and an injected pod runs with the value. A caller without the
/// API server's certificate gets no answer.
#[test]
fn the_chart_installs_the_webhook_as_a_pod_that_the_api_server_calls() {
    let node = node();
    let release_ns = node.namespace("chart", json!({}));
    let apps = node.namespace("chart-apps", json!({}));
    let bao = Bao::dev();
    bao.kv2("registry", json!({"username": "robot", "password": "registry-pw-from-openbao"}));
    bao.kv2("mysql", json!({"MYSQL_PASSWORD": "pw-from-openbao"}));
    bao.policy("read", r#"path "secret/data/*" { capabilities = ["read"] }"#);
    node.kubernetes_auth(&bao);
    bao.api(
        "POST",
        "auth/kubernetes/role/default",
        Some(json!({"bound_service_account_names": ["*"], "bound_service_account_namespaces": [release_ns.name, apps.name],
                    "token_policies": ["read"], "ttl": "10m"})),
    );
    let port = free_port();
    let api_port = node.cluster.url.rsplit(':').next().unwrap().to_string();
    let client_ca = std::fs::read_to_string(&node.cluster.webhook_client_ca).unwrap();
    let values = json!({
        "replicaCount": 1,
        "image": {"repository": "localhost/vault-secrets-webhook", "tag": "test", "pullPolicy": "Never"},
        "vaultEnv": {"repository": "localhost/vault-env", "tag": "test"},
        "hostNetwork": true,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "listenAddress": format!("127.0.0.1:{port}"),
        "service": {"internalPort": port},
        "deployment": {"strategy": {"type": "Recreate"}},
        "webhookClientConfig": {"useUrl": true, "url": format!("https://127.0.0.1:{port}")},
        "certificate": {"extraAltNames": ["127.0.0.1"]},
        "clientAuth": {"caBundle": client_ca},
        "env": {"VAULT_ADDR": bao.addr, "VAULT_ENV_PULL_POLICY": "Never",
                // No kube-proxy on this node: the API server's own address, not its Service's.
                "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": api_port},
        "podsFailurePolicy": "Fail",
        "secretsFailurePolicy": "Fail",
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": apps.name}},
    });
    let values_file = node.cluster.dir.path().join(format!("values-{port}.json"));
    std::fs::write(&values_file, values.to_string()).unwrap();
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/charts/vault-secrets-webhook");
    let install = node.cluster.helm(&[
        "install",
        "vsw",
        chart.to_str().unwrap(),
        "-n",
        &release_ns.name,
        "-f",
        values_file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "2m",
    ]);
    let uninstall = Uninstall(node, &release_ns.name);
    assert_eq!(install.code, Some(0), "helm install: {}\n{}", install.all(), release_ns.events());
    let deployment = release_ns.get("deployments", "vsw-vault-secrets-webhook");
    assert_eq!(deployment["status"]["availableReplicas"], 1, "{}", deployment["status"]);
    let webhook_pod = release_ns.pods("app.kubernetes.io/name=vault-secrets-webhook").pop().expect("the webhook's pod");
    assert_eq!(webhook_pod["spec"]["hostNetwork"], true);

    // The seed's registry Secret, created as its README does.
    let secret = node.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "-n",
        &apps.name,
        "--docker-server=registry.example",
        "--docker-username=vault:secret/data/registry#username",
        "--docker-password=vault:secret/data/registry#password",
    ]);
    let webhook_log = || release_ns.logs(webhook_pod["metadata"]["name"].as_str().unwrap(), "vault-secrets-webhook");
    assert_eq!(secret.code, Some(0), "{}\n{}", secret.all(), webhook_log());
    let stored = apps.get("secrets", "regcred");
    let config = unb64(stored["data"][".dockerconfigjson"].as_str().unwrap());
    assert!(config.contains("\"username\":\"robot\"") && config.contains("registry-pw-from-openbao"), "{config}");
    assert!(config.contains(&b64(b"robot:registry-pw-from-openbao")), "the auth field is recomputed: {config}");

    // An injected pod, run by the kubelet.
    ns_run_show(&apps, "mysql", &bao);

    // Only the API server is answered: the same URL without its client certificate is refused.
    let curl = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", &format!("https://127.0.0.1:{port}/secrets")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "401", "a caller without the API server's certificate");
    assert!(!webhook_log().contains("registry-pw-from-openbao"), "{}", webhook_log());

    // The webhook restarted (a rollout) while pods are created: under failurePolicy Fail each pod
    // is either refused or mutated; none is stored (and started) with a literal vault: value.
    let restart = node.kubectl(&["rollout", "restart", "-n", &release_ns.name, "deployment/vsw-vault-secrets-webhook"]);
    assert_eq!(restart.code, Some(0), "{}", restart.all());
    let (mut created, mut refused) = (0, 0);
    let started = std::time::Instant::now();
    let rolled_out = || {
        let d = release_ns.get("deployments", "vsw-vault-secrets-webhook");
        d["status"]["updatedReplicas"] == 1 && d["status"]["availableReplicas"] == 1 && d["status"]["replicas"] == 1
    };
    while started.elapsed() < Duration::from_secs(8) || !rolled_out() {
        assert!(started.elapsed() < Duration::from_secs(120), "the rollout did not finish: {}", release_ns.events());
        let pod = json!({"metadata": {"generateName": "during-rollout-"}, "spec": {"hostNetwork": true, "restartPolicy": "Never",
                         "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", "echo $MYSQL_PASSWORD"],
                                         "env": mysql_env()}]}});
        let (code, answer) = node.cluster.api("POST", &apps.path("pods"), Some(&pod));
        if code == 201 {
            created += 1;
            assert_eq!(answer["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]), "stored unmutated: {answer}");
        } else {
            refused += 1;
            assert!(answer.to_string().contains("vault-secrets-webhook"), "{code} {answer}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(created > 0 && refused > 0, "created {created}, refused {refused}: the restart was not seen");
    drop(uninstall);
}

/// `helm uninstall` when dropped (the chart's cluster-wide objects are not in the namespace).
struct Uninstall<'a>(&'static Node, &'a str);

impl Drop for Uninstall<'_> {
    fn drop(&mut self) {
        let _ = self.0.cluster.helm(&["uninstall", "vsw", "-n", self.1]);
    }
}

/// A Deployment `name` in `ns` whose app prints `vault:secret/data/mysql#MYSQL_PASSWORD` from
/// `bao`: Available, and its log shows the value and no token.
fn ns_run_show(ns: &Namespace, name: &str, bao: &Bao) {
    let annotations = json!({"vault.security.banzaicloud.io/vault-addr": bao.addr});
    ns.create("deployments", &deployment(name, annotations, json!({}), mysql_env(), SHOW));
    let (_, _, log) = shown(ns, name);
    assert!(log.contains("MYSQL_PASSWORD=pw-from-openbao\n") && log.contains("VAULT_TOKEN=unset\n"), "{log}");
}

/// A container without `command` whose image is in a registry (Debian's docker-registry on
/// 127.0.0.1): the webhook reads the image's ENTRYPOINT and CMD from the registry, the kubelet
/// pulls the same image through containerd, and the app runs as the image says, under vault-env.
#[test]
fn a_container_without_command_runs_its_images_entrypoint_pulled_from_a_registry() {
    let (node, ns, _bao, _hook) = scene("registry", &[]);
    let registry = Registry::plain();
    // An image of our own with an ENTRYPOINT and a CMD, pushed with podman.
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Containerfile"),
        format!(
            "FROM {APP_IMAGE}\nENTRYPOINT [\"sh\", \"-c\", \"echo \\\"entrypoint with $0 $1 MYSQL_PASSWORD=$MYSQL_PASSWORD\\\"; echo shown; exec sleep 3600\"]\nCMD [\"first\", \"second\"]\n"
        ),
    )
    .unwrap();
    let tag = format!("localhost/vault-env-test-entrypoint:{}", fastrand::u32(..));
    let image = format!("{}/app:v1", registry.host);
    let podman = |args: &[&str]| {
        let mut cmd = std::process::Command::new("podman");
        cmd.args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]).args(args);
        let out = run_with_timeout(cmd, Duration::from_secs(120));
        assert_eq!(out.code, Some(0), "podman {args:?}: {}", out.all());
    };
    podman(&["build", "-q", "-t", &tag, context.path().to_str().unwrap()]);
    let pushed = std::panic::catch_unwind(|| podman(&["push", "-q", "--tls-verify=false", &tag, &format!("docker://{image}")]));
    podman(&["rmi", &tag]);
    pushed.unwrap();
    // containerd pulls from it over plain HTTP, as this registry serves.
    let hosts = node.dir.join("containerd/certs.d").join(&registry.host);
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(hosts.join("hosts.toml"), format!("server = \"{0}\"\n[host.\"{0}\"]\n  capabilities = [\"pull\", \"resolve\"]\n", registry.base))
        .unwrap();

    let pod = json!({"metadata": {"name": "app"}, "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": image, "imagePullPolicy": "Always", "env": mysql_env()}]}});
    let stored = ns.create("pods", &pod);
    assert_eq!(stored["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]), "{stored}");
    assert_eq!(stored["spec"]["containers"][0]["args"][0], "sh", "the image's ENTRYPOINT, from the registry: {stored}");
    ns.wait_phase("app", &["Running"], MINUTE).unwrap();
    let log = ns.wait_log("app", "app", "shown", MINUTE);
    assert!(log.contains("entrypoint with first second MYSQL_PASSWORD=pw-from-openbao\n"), "{log}");
    let pulled = ns.events();
    assert!(pulled.contains("Pulled") && pulled.contains(&image), "the kubelet pulled {image}:\n{pulled}");
}

/// The agent configuration in the user's ConfigMap (`vault-agent-configmap`): OpenBao's agent
/// (our image of `bao`, playing `vault`) logs in with the pod's token and renders a template.
const AGENT_CONFIG: &str = r#"
pid_file = "/tmp/vault-agent.pid"
auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config = { role = "default" }
  }
  sink "file" { config = { path = "/vault/.vault-token" } }
}
template {
  contents = "password: {{ with secret \"secret/data/mysql\" }}{{ .Data.data.MYSQL_PASSWORD }}{{ end }}\n"
  destination = "/vault/secrets/config.yaml"
}
"#;

/// Waits for the rendered file, prints it, then what SHOW prints.
const SHOW_RENDERED: &str = "until [ -s /vault/secrets/config.yaml ]; do sleep 0.2; done; cat /vault/secrets/config.yaml; ";

/// Bank-Vaults' e2e `deployment-template`: with `vault-agent-configmap`, the agent sidecar renders
/// the ConfigMap's template into the volume the app mounts at /vault/secrets (read here with
/// `kubectl exec`, exactly); the Deployment becomes Available.
#[test]
fn the_agent_sidecar_renders_the_configmaps_template_in_the_pod() {
    let (node, ns, _bao, _hook) = scene("template", &[]);
    ns.create("configmaps", &json!({"metadata": {"name": "agent-config"}, "data": {"config.hcl": AGENT_CONFIG}}));
    let annotations = json!({"vault.security.banzaicloud.io/vault-agent-configmap": "agent-config"});
    let script = format!("{SHOW_RENDERED}{SHOW}");
    ns.create("deployments", &deployment("template", annotations, json!({}), json!([]), &script));
    // (The app waits for the agent's first rendering.)
    let (pod, name, _) = shown(&ns, "template");
    let containers: Vec<&str> = pod["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(containers, ["vault-agent", "app"], "{pod}");
    let rendered = node.kubectl(&["exec", "-n", &ns.name, &name, "-c", "app", "--", "cat", "/vault/secrets/config.yaml"]);
    assert_eq!((rendered.code, rendered.stdout.as_str()), (Some(0), "password: pw-from-openbao\n"), "{}", rendered.all());
}

/// Bank-Vaults' e2e `deployment-init-useagent-seccontext`: `vault-agent-configmap` with
/// `vault-agent: "true"`: the init agent logs in with the pod's token, sinks it and exits; vault-env
/// in the app resolves with that token, without a login of its own; all of it as a non-root user.
#[test]
fn the_init_agents_token_is_used_by_vault_env_in_the_pod() {
    let (_node, ns, _bao, _hook) = scene("useagent", &[]);
    ns.create("configmaps", &json!({"metadata": {"name": "agent-config"}, "data": {"config.hcl": AGENT_CONFIG}}));
    let annotations =
        json!({"vault.security.banzaicloud.io/vault-agent-configmap": "agent-config", "vault.security.banzaicloud.io/vault-agent": "true"});
    let non_root = json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": true}});
    ns.create("deployments", &deployment("useagent", annotations, non_root, mysql_env(), SHOW));
    let (pod, _, log) = shown(&ns, "useagent");
    let inits: Vec<(&str, i64)> = pod["status"]["initContainerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"]["terminated"]["exitCode"].as_i64().unwrap_or(-1)))
        .collect();
    assert!(inits.contains(&("vault-agent", 0)), "the init agent ran to completion: {inits:?}");
    assert!(log.contains("MYSQL_PASSWORD=pw-from-openbao\n") && log.contains("id=1000:1000"), "{log}");
    assert!(!log.contains("logged in to Vault"), "vault-env used the agent's token: {log}");
}

/// A consul-template sidecar (`vault-ct-configmap`, with `vault-agent: "true"`): the login agent
/// sinks a token, consul-template (built from its Go module, in an image of ours) renders the
/// ConfigMap's template with it into the volume the app mounts, and vault-env in the app uses the
/// same token.
#[test]
fn a_consul_template_sidecar_renders_with_the_login_agents_token_in_the_pod() {
    let (_node, ns, _bao, _hook) = scene("consul-template", &[("VAULT_ROLE", "default")]);
    // consul-template's configuration in the user's ConfigMap (`vault-ct-configmap`).
    let config = template_stanza("password: ", "secret/data/mysql", "MYSQL_PASSWORD", "/vault/secrets/config.yaml");
    ns.create("configmaps", &json!({"metadata": {"name": "ct-config"}, "data": {"config.hcl": config}}));
    let annotations = json!({"vault.security.banzaicloud.io/vault-ct-configmap": "ct-config", "vault.security.banzaicloud.io/vault-agent": "true"});
    let script = format!("{SHOW_RENDERED}{SHOW}");
    ns.create("deployments", &deployment("ct", annotations, json!({}), mysql_env(), &script));
    let (_, _, log) = shown(&ns, "ct");
    assert!(log.contains("password: pw-from-openbao\n") && log.contains("MYSQL_PASSWORD=pw-from-openbao\n"), "{log}");
    assert!(!log.contains("logged in to Vault"), "vault-env used the agent's token: {log}");
}

/// A namespace labelled for Pod Security `restricted` admits and runs an injected pod: the
/// webhook's init container and the wrapped app satisfy the profile (non-root, RuntimeDefault
/// seccomp, no privilege escalation, every capability dropped), the kubelet enforces it, and
/// vault-env logs in with the pod's projected token. `restricted` forbids the host's network, so
/// this pod and an OpenBao pod (our image of `bao`) use the node's bridge segment, which has no
/// gateway and no route out; OpenBao checks the token offline (a jwt mount at `kubernetes` with
/// the cluster's ServiceAccount signing key), as it cannot reach the API server from there.
#[test]
fn a_restricted_namespace_admits_and_runs_an_injected_pod_on_the_pod_network() {
    let node = node();
    let vault_ns = node.namespace("restricted-vault", json!({}));
    let ns = node.namespace("restricted", json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let bao_pod = json!({"metadata": {"name": "openbao"}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "openbao", "image": "localhost/vault-env-test-bao:test", "imagePullPolicy": "Never",
        "args": ["server", "-dev", "-dev-root-token-id=root", "-dev-no-store-token", "-dev-listen-address=0.0.0.0:8200"],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "readinessProbe": {"exec": {"command": ["vault", "status", "-address=http://127.0.0.1:8200"]}, "periodSeconds": 1}}]}});
    vault_ns.create("pods", &bao_pod);
    let running = vault_ns.wait_phase("openbao", &["Running"], MINUTE).unwrap();
    let ip = running["status"]["podIP"].as_str().expect("a pod IP").to_string();
    assert!(ip.starts_with("10.244.91."), "on the node's bridge segment: {ip}");
    let public_key = std::fs::read_to_string(node.dir.join("pki/sa.pub")).unwrap();
    let setup = format!(
        "set -e; export VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root; \
         until vault status >/dev/null 2>&1; do sleep 0.2; done; \
         vault kv put secret/mysql MYSQL_PASSWORD=pw-from-openbao >/dev/null; \
         echo 'path \"secret/data/mysql\" {{ capabilities = [\"read\"] }}' | vault policy write mysql - >/dev/null; \
         vault auth enable -path=kubernetes jwt >/dev/null; \
         vault write auth/kubernetes/config jwt_validation_pubkeys='{public_key}' >/dev/null; \
         vault write auth/kubernetes/role/default role_type=jwt user_claim=sub bound_subject=system:serviceaccount:{}:default \
           bound_audiences=https://kubernetes.default.svc.cluster.local token_policies=mysql >/dev/null; echo configured",
        ns.name
    );
    let configured = node.kubectl(&["exec", "-n", &vault_ns.name, "openbao", "--", "sh", "-c", &setup]);
    assert!(configured.stdout.contains("configured"), "{}", configured.all());

    let _hook = ns.start_webhook(&[("VAULT_ADDR", &format!("http://{ip}:8200"))]);
    let restricted = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true, "runAsUser": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}});
    let pod = json!({"metadata": {"name": "app"}, "spec": {"terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", SHOW],
                        "env": mysql_env(), "securityContext": restricted}]}});
    let (code, stored) = node.cluster.api("POST", &ns.path("pods"), Some(&pod));
    assert_eq!(code, 201, "Pod Security refused the injected pod: {stored}");
    assert_eq!(stored["spec"]["initContainers"][0]["name"], "copy-vault-env", "{stored}");
    ns.wait_phase("app", &["Running"], MINUTE).unwrap();
    let log = ns.wait_log("app", "app", "shown", MINUTE);
    assert!(log.contains("MYSQL_PASSWORD=pw-from-openbao\n") && log.contains("id=1000:1000"), "{log}");
    // The same pod without the restricted settings is refused by Pod Security: the label is live.
    let mut loose = pod.clone();
    loose["metadata"]["name"] = json!("loose");
    loose["spec"]["containers"][0]["securityContext"] = json!({});
    let (code, answer) = node.cluster.api("POST", &ns.path("pods"), Some(&loose));
    assert!(code == 403 && answer.to_string().contains("restricted"), "{code} {answer}");
}

/// Native sidecars and reinvocation as the kubelet orders them: with
/// `vault-agent-native-sidecar`, the agent is an init container with `restartPolicy: Always`,
/// which the kubelet starts before the app and keeps running beside it; another team's webhook,
/// called after ours, adds a container with a `vault:` value, and ours, called again
/// (`reinvocationPolicy: IfNeeded`), wraps it: the kubelet runs it with the value.
#[test]
fn a_native_agent_sidecar_and_a_later_webhooks_container_run_in_the_kubelets_order() {
    let (node, ns, _bao, _hook) = scene("native", &[]);
    let sidecar = json!({"name": "sidecar", "image": APP_IMAGE, "imagePullPolicy": "Never",
                         "command": ["sh", "-c", "echo \"SIDECAR_TOKEN=$SIDECAR_TOKEN\"; echo shown; exec sleep 3600"],
                         "env": [{"name": "SIDECAR_TOKEN", "value": "vault:secret/data/mysql#MYSQL_PASSWORD"}]});
    let others = SidecarWebhook::adding(Some(&sidecar));
    let name = format!("{}-sidecar-injector", ns.name);
    let ca = b64(&std::fs::read(&others.ca).unwrap());
    node.cluster.must(
        "POST",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        Some(&json!({"metadata": {"name": name}, "webhooks": [{
            "name": "sidecar.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "clientConfig": {"url": others.url, "caBundle": ca},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}}}]})),
    );
    let _others_config = DeleteOnDrop(node, format!("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"));
    ns.create("configmaps", &json!({"metadata": {"name": "agent-config"}, "data": {"config.hcl": AGENT_CONFIG}}));
    let annotations = json!({"vault.security.banzaicloud.io/vault-agent-configmap": "agent-config",
                             "vault.security.banzaicloud.io/vault-agent-native-sidecar": "true"});
    let script = format!("{SHOW_RENDERED}{SHOW}");
    // The other webhook learns of its configuration through an informer: retry until it adds.
    let mut stored = Value::Null;
    let added = busy_wait(Duration::from_secs(20), || {
        let probe = json!({"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "c", "image": APP_IMAGE, "command": ["sh"]}]}});
        stored = node.cluster.api("POST", &format!("{}?dryRun=All", ns.path("pods")), Some(&probe)).1;
        stored["spec"]["containers"].as_array().is_some_and(|c| c.iter().any(|c| c["name"] == "sidecar"))
    });
    assert!(added, "the other webhook is not called: {stored}");
    ns.create("deployments", &deployment("native", annotations, json!({}), mysql_env(), &script));
    ns.wait_available("native", MINUTE);
    let pod = ns.pods("app=native").pop().expect("a pod");
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    // Both of our wrappers are there, and the agent is a native sidecar.
    let containers: Vec<(&str, &Value)> =
        pod["spec"]["containers"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), &c["command"])).collect();
    assert_eq!(containers, [("app", &json!(["/vault/vault-env"])), ("sidecar", &json!(["/vault/vault-env"]))], "{pod}");
    let agent = pod["spec"]["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "vault-agent").cloned().unwrap_or_default();
    assert_eq!(agent["restartPolicy"], "Always", "{pod}");
    let log = ns.wait_log(pod_name, "sidecar", "shown", MINUTE);
    assert!(log.contains("SIDECAR_TOKEN=pw-from-openbao\n"), "{log}");
    let log = ns.wait_log(pod_name, "app", "shown", MINUTE);
    assert!(log.contains("password: pw-from-openbao\n") && log.contains("MYSQL_PASSWORD=pw-from-openbao\n"), "{log}");
    // The kubelet started the agent first and keeps it running beside the app.
    let pod = ns.get("pods", pod_name);
    let agent = pod["status"]["initContainerStatuses"].as_array().unwrap().iter().find(|s| s["name"] == "vault-agent").cloned().unwrap_or_default();
    let app = pod["status"]["containerStatuses"].as_array().unwrap().iter().find(|s| s["name"] == "app").cloned().unwrap_or_default();
    let agent_started = agent["state"]["running"]["startedAt"].as_str().unwrap_or_else(|| panic!("the agent is not running: {agent}")).to_string();
    let app_started = app["state"]["running"]["startedAt"].as_str().expect("the app runs").to_string();
    assert!(agent_started <= app_started, "agent {agent_started}, app {app_started}");
}

/// `DELETE path` (on the node's API server) when dropped.
struct DeleteOnDrop(&'static Node, String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = self.0.cluster.api("DELETE", &self.1, None);
    }
}
