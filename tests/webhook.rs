//! vault-secrets-webhook as the API server uses it: real AdmissionReview JSON POSTed over HTTPS
//! (with `?timeout=10s`), the returned JSONPatch applied to the object, the result read back as a
//! k8s-openapi Pod. Kubernetes reads go to a fixture server answering the real API paths; image
//! lookups go to Debian's docker-registry with images pushed by the test.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

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

/// A log line that cannot be written (stderr a closed pipe) is dropped: the webhook starts and
/// mutates pods. tracing-subscriber reported the failed write with `eprintln!`, which panics
/// there, so the webhook ended at its first line.
#[test]
fn a_closed_log_pipe_does_not_stop_the_webhook() {
    let hook = Webhook::start_logging_to(closed_pipe(), &[("VAULT_ADDR", "https://vault.vault:8200")]);
    let review = fixture("pod-create-review.json");
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!((code, answer["response"]["allowed"].clone()), (200, json!(true)), "{answer}");
    assert!(apply(&review, &answer).is_some(), "the pod is mutated: {answer}");
    // Its own messages too: bad settings still exit 64 (not 101 from a panicking `eprintln!`),
    // `--help` into a closed pipe exits 1.
    let status = Command::new(webhook_bin()).env_clear().env("VAULT_SKIP_VERIFY", "maybe").stderr(closed_pipe()).status().unwrap();
    assert_eq!(status.code(), Some(64), "bad settings");
    let status = Command::new(webhook_bin()).arg("--help").stdout(closed_pipe()).status().unwrap();
    assert_eq!(status.code(), Some(1), "--help");
}

/// Its heap gets no transparent huge pages, whatever the kernel's setting: with them each first
/// touch of a 2 MiB region made all of it resident (17 MiB at the benchmark's peak, 65-72 before).
#[test]
fn the_webhook_runs_without_transparent_huge_pages() {
    let hook = Webhook::start(&[]);
    let (code, _) = hook.get("/healthz");
    assert_eq!(code, 200);
    // Reported since Linux 6.x; older kernels have the flag without the line.
    match hook.status_field("THP_enabled") {
        Some(enabled) => assert_eq!(enabled, "0", "THP_enabled in /proc/PID/status"),
        None => eprintln!("this kernel does not report THP_enabled: not checked"),
    }
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
            // optional: true is read too (Bank-Vaults does); a missing optional one holds nothing.
            {"name": "optional", "image": "e:1", "command": ["e"], "envFrom": [{"configMapRef": {"name": "settings", "optional": true}}]},
            {"name": "optional-gone", "image": "f:1", "command": ["f"], "envFrom": [{"secretRef": {"name": "gone", "optional": true}}]},
        ]),
        json!({}),
    );
    let review = review_of(pod);
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!(code, 200, "{answer}");
    let pod = as_pod(&apply(&review, &answer).expect("a patch"));
    let mutated: Vec<bool> =
        pod.spec.unwrap().containers.iter().map(|c| c.command.as_deref() == Some(&["/vault/vault-env".to_string()][..])).collect();
    assert_eq!(mutated, [true, false, true, false, true, false]);
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

pub(crate) fn commandless_pod(images: &[&str], annotations: Value, extra_spec: Value) -> Value {
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

pub(crate) fn args_of(hook: &Webhook, pod: Value) -> Result<Vec<Vec<String>>, String> {
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
    // A registry that does not answer: a denial that does not say how the connection failed
    // (it would map what listens where for any pod author); the log has it.
    let closed = format!("127.0.0.1:{}", free_port());
    let error = args_of(&hook, commandless_pod(&[&format!("{closed}/app:1")], json!({}), json!({}))).unwrap_err();
    assert!(error.contains("the registry could not be reached"), "{error}");
    assert!(!error.contains("refused") && !error.contains("tcp") && !error.contains("error sending"), "{error}");
    assert!(hook.log().contains("image lookup failed"), "{}", hook.log());
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
    // ECR Public: a token from ecr-public in us-east-1, with the same credentials.
    assert_eq!(args_of(&hook, commandless_pod(&["public.ecr.aws/team/app:1"], json!({}), json!({}))).unwrap(), [["/bin/app", "--flag"]]);
    assert!(aws.log().contains("ecr-public us-east-1 signature-ok ASIAIMDSKEY"), "{}", aws.log());
    assert!(!log.contains("bad-signature") && !log.contains("without the session token"), "{log}");
    let tunnels = std::fs::read_to_string(aws.dir.path().join("proxy.log")).unwrap();
    assert!(tunnels.lines().any(|l| l == format!("{ECR}:443")), "{tunnels}");

    // With a pull secret for the registry, the instance role is not asked.
    let auth = STANDARD.encode(format!("AWS:{ECR_PASSWORD}"));
    let config = json!({"auths": {ECR: {"auth": auth}}}).to_string();
    aws.api.secret("shop", "ecr-pull", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", config.as_bytes())]);
    let pod = commandless_pod(&[&format!("{ECR}/team/app:2")], json!({}), json!({"imagePullSecrets": [{"name": "ecr-pull"}]}));
    assert_eq!(args_of(&hook, pod).unwrap(), [["/bin/app", "--flag"]]);
    assert_eq!(aws.log().matches("ecr us-east-1 signature-ok").count(), 1);

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

/// Stalled headers, stalled uploads and idle keep-alives held connections
/// (and up to 8 MiB each) for as long as the client liked. Now each is closed after its timeout.
#[test]
fn slow_and_idle_clients_are_cut_off() {
    let hook = Webhook::start(&[("HEADER_READ_TIMEOUT", "1s"), ("REQUEST_TIMEOUT", "2s"), ("IDLE_TIMEOUT", "2s")]);
    let port = hook.url.rsplit(':').next().unwrap().to_string();
    let client = |mode: &'static str| {
        let (port, ca) = (port.clone(), hook.ca.clone());
        std::thread::spawn(move || {
            let out = Command::new("python3").arg(fixtures().join("slow_client.py")).arg(&port).arg(&ca).args([mode, "20"]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let (seconds, first) = text.split_once(' ').unwrap_or_else(|| panic!("{mode}: {text} {}", String::from_utf8_lossy(&out.stderr)));
            (seconds.parse::<f64>().unwrap(), first.to_string())
        })
    };
    let (headers, body, idle) = (client("headers"), client("body"), client("idle"));
    let (headers, body, idle) = (headers.join().unwrap(), body.join().unwrap(), idle.join().unwrap());
    assert!(headers.0 < 5.0 && headers.1 != "still open", "half-sent headers: {headers:?}");
    assert!((1.5..6.0).contains(&body.0) && body.1.starts_with("HTTP/1.1 408"), "a stalled upload: {body:?}");
    assert!(idle.0 < 6.0 && idle.1 != "still open", "an idle keep-alive: {idle:?}");
    assert_eq!(hook.get("/healthz").0, 200);
}

/// Stalled 4 MB uploads peaked at 135 MB against the chart's 128 MiB limit (the review's
/// reproduction: 20 at once). Bodies buffered at once are bounded in bytes, not only in number.
#[test]
fn stalled_uploads_stay_within_the_charts_memory_limit() {
    let hook = Webhook::start(&[("VAULT_TOKEN", "x"), ("REQUEST_TIMEOUT", "4s")]);
    let port = hook.url.rsplit(':').next().unwrap().to_string();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (port, ca) = (port.clone(), hook.ca.clone());
            std::thread::spawn(move || {
                let out = Command::new("python3").arg(fixtures().join("slow_client.py")).arg(&port).arg(&ca).args(["upload", "20"]).output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
        })
        .collect();
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for answer in &answers {
        assert!(answer.contains("HTTP/1.1 408") || answer.contains("HTTP/1.1 503"), "{answers:?}");
    }
    let peak_kib = hook.peak_rss_kib();
    println!("webhook peak RSS with 20 stalled 4 MB uploads: {} MiB", peak_kib / 1024);
    // Before: 124 MiB of the chart's 128 MiB. A quarter of the limit stays for everything else.
    assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB leaves too little of the chart's 128 MiB limit");
    assert_eq!(hook.get("/healthz").0, 200);
}

/// Callers without a certificate held every connection slot (the review's reproduction, with the
/// cap at 8: the API server's request got no answer for 50 s). With `TLS_CLIENT_CA_FILE` they
/// have a small budget of their own, so the API server's certificate is answered at once.
#[test]
fn unverified_connections_cannot_take_the_api_servers_slots() {
    let hook = Webhook::start_verifying_callers(&[("MAX_CONNECTIONS", "8")]);
    let port = hook.url.rsplit(':').next().unwrap().to_string();
    let done = hook.dir.path().join("idle.done");
    let mut idle = Proc::new(
        Command::new("python3")
            .arg(fixtures().join("idle_h2.py"))
            .args([port.as_str(), "8", "30"])
            .arg(&hook.ca)
            .arg(&done)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(busy_wait(Duration::from_secs(15), || std::fs::read_to_string(&done).is_ok_and(|t| t.starts_with("opened 8"))), "the idle client");
    let started = std::time::Instant::now();
    let (code, answer) = hook.post("/pods", &fixture("pod-create-review.json"));
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}");
    println!("the API server's certificate answered after {:?} beside 8 idle unverified connections", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    assert!(busy_wait(Duration::from_secs(40), || matches!(idle.0.try_wait(), Ok(Some(_)))), "the idle client did not stop");
    let report = std::fs::read_to_string(&done).unwrap();
    assert!(report.contains("closed 8"), "the server closed every idle unverified connection within the hold: {report}");
}

/// Issue 14: no Bank-Vaults annotation is ignored in silence. Other providers' keys and unknown
/// keys are warnings in the answer (kubectl prints them); an auth method vault-env would refuse,
/// or a consul-template tuning value that is not valid, is a denial naming the annotation.
#[test]
fn unsupported_and_unknown_annotations_are_warned_or_denied() {
    let hook = Webhook::start(&[("VAULT_ADDR", "https://vault.vault:8200")]);
    let app = json!([{"name": "app", "image": "app:1", "command": ["/app"], "env": [{"name": "P", "value": "vault:secret/data/app#p"}]}]);
    let a = |key: &str| format!("vault.security.banzaicloud.io/{key}");
    let (code, answer) = hook.post("/pods", &review_of(pod_with(app.clone(), json!({a("bao-addr"): "https://bao:8200", a("vault-adr"): "x"}))));
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}");
    assert_eq!(
        answer["response"]["warnings"],
        json!([
            "vault.security.banzaicloud.io/bao-addr: only Vault (and OpenBao through it) is supported; ignored",
            "vault.security.banzaicloud.io/vault-adr: not a known annotation; ignored"
        ])
    );
    assert!(answer["response"]["patch"].is_string(), "still mutated: {answer}");
    for (annotations, key, says) in [
        (json!({a("vault-ct-configmap"): "ct-config", a("vault-ct-cpu"): "lots"}), "vault-ct-cpu", "a Kubernetes quantity"),
        (json!({a("vault-ct-configmap"): "../etc"}), "vault-ct-configmap", "is not valid"),
        (json!({a("vault-auth-method"): "aws-ecs"}), "vault-auth-method", "vault-auth-method=\"aws-ecs\" is not valid"),
        // Bank-Vaults reads these as false; ours would have read them as true: denied instead.
        (json!({a("vault-skip-verify"): "yes"}), "vault-skip-verify", "expected true or false"),
        (json!({a("mutate-probes"): "on"}), "mutate-probes", "expected true or false"),
    ] {
        let (code, answer) = hook.post("/pods", &review_of(pod_with(app.clone(), annotations)));
        assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(false)), "{key}: {answer}");
        let message = answer["response"]["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&a(key)) && message.contains(says), "{key}: {message}");
    }
    let (_, answer) = hook.post("/pods", &review_of(pod_with(app.clone(), json!({a("vault-agent"): "maybe"}))));
    assert_eq!(answer["response"]["allowed"], json!(false), "{answer}");
    // A pod's vault-skip-verify counts only with VAULT_ALLOW_OBJECT_SKIP_VERIFY (Bank-Vaults
    // v1.23.1); otherwise it is ignored with a warning.
    let review = review_of(pod_with(app.clone(), json!({a("vault-skip-verify"): "true"})));
    let (_, answer) = hook.post("/pods", &review);
    assert!(answer["response"]["warnings"].to_string().contains("VAULT_ALLOW_OBJECT_SKIP_VERIFY=true"), "{answer}");
    let env = &apply(&review, &answer).unwrap()["spec"]["containers"][0]["env"];
    assert!(env.as_array().unwrap().contains(&json!({"name": "VAULT_SKIP_VERIFY", "value": "false"})), "{env}");
}

/// A pod written for Bank-Vaults' successor with its OpenBao provider: `provider: bao`, `bao-*`
/// annotations and `bao:` references are served as the vault ones, without warnings; a pod the
/// successor already mutated (secret-init) is left alone, with a warning, not wrapped twice.
#[test]
fn the_successors_openbao_pods() {
    let hook = Webhook::start(&[("VAULT_ADDR", "https://vault.vault:8200")]);
    let new = |key: &str| format!("secrets-webhook.security.bank-vaults.io/{key}");
    let app = json!([{"name": "app", "image": "app:1", "command": ["/app"], "env": [{"name": "P", "value": "bao:secret/data/app#p"}]}]);
    let review = review_of(pod_with(app, json!({new("provider"): "bao", new("bao-addr"): "https://openbao.infra:8200", new("bao-role"): "app"})));
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}");
    assert!(answer["response"].get("warnings").is_none_or(|w| w.as_array().is_some_and(Vec::is_empty)), "{answer}");
    let pod = apply(&review, &answer).expect("mutated");
    let app = &pod["spec"]["containers"][0];
    assert_eq!(app["command"], json!(["/vault/vault-env"]));
    let env = app["env"].as_array().unwrap();
    assert!(
        env.contains(&json!({"name": "VAULT_ADDR", "value": "https://openbao.infra:8200"}))
            && env.contains(&json!({"name": "VAULT_ROLE", "value": "app"})),
        "{app}"
    );

    let successor = json!([{"name": "app", "image": "app:1", "command": ["/vault/secret-init"], "args": ["/app"],
        "env": [{"name": "P", "value": "vault:secret/data/app#p"}]}]);
    let review = review_of(pod_with(successor, json!({})));
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}");
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert!(answer["response"]["warnings"].to_string().contains("secret-init"), "{answer}");
}

/// Air-gapped clusters (Bank-Vaults' most repeated request): images of a registry the webhook
/// cannot reach are looked up on a mirror (`REGISTRY_MIRRORS`), with the webhook's own docker
/// config (`DOCKER_CONFIG`) as credentials. Two loopback registries: the original one is not even
/// listening; the mirror needs a login only the webhook's docker config has.
#[test]
fn images_are_looked_up_on_a_mirror_with_the_webhooks_docker_config() {
    let mirror = Registry::secure("mirror-bot", "mirror-pass");
    mirror.push("team/app", "7", "oci");
    let original = format!("127.0.0.1:{}", free_port());
    let docker = tempfile::tempdir().unwrap();
    let auth = STANDARD.encode("mirror-bot:mirror-pass");
    std::fs::write(docker.path().join("config.json"), json!({"auths": {mirror.host.clone(): {"auth": auth}}}).to_string()).unwrap();
    let mirrors = format!("{original}={}", mirror.host);
    let config_dir = docker.path().display().to_string();
    let api = KubeApi::start();
    let kubeconfig = api.kubeconfig.display().to_string();
    let hook = Webhook::start(&[
        ("KUBECONFIG", &kubeconfig),
        ("REGISTRY_MIRRORS", &mirrors),
        ("DOCKER_CONFIG", &config_dir),
        ("REGISTRY_SKIP_VERIFY", "true"),
    ]);
    let image = format!("{original}/team/app:7");
    let review = review_of(commandless_pod(&[&image], json!({}), json!({})));
    let (code, answer) = hook.post("/pods", &review);
    assert_eq!((code, &answer["response"]["allowed"]), (200, &json!(true)), "{answer}\n{}", hook.log());
    let pod = as_pod(&apply(&review, &answer).expect("a patch"));
    let app = &pod.spec.unwrap().containers[0];
    assert_eq!((app.image.as_deref(), app.args.as_deref()), (Some(image.as_str()), Some(&["/bin/app".to_string(), "--flag".into()][..])));
    // Without the webhook's docker config the mirror refuses, and the denial names the mirror.
    let anonymous = Webhook::start(&[("KUBECONFIG", &kubeconfig), ("REGISTRY_MIRRORS", &mirrors), ("REGISTRY_SKIP_VERIFY", "true")]);
    let error = args_of(&anonymous, commandless_pod(&[&image], json!({}), json!({}))).unwrap_err();
    assert!(error.contains(&format!("via mirror {}", mirror.host)), "{error}");
}
