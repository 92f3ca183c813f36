//! Against a real Kubernetes control plane (tests/common/cluster.rs): etcd and kube-apiserver built
//! from their Go modules, helm installing our chart, the API server calling our webhook, and
//! OpenBao's kubernetes auth checking tokens with the API server's TokenReview.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// A pod's token from the TokenRequest API logs vault-env in through OpenBao's kubernetes auth,
/// which asks this API server (TokenReview) whether the token is valid; another ServiceAccount's
/// token is refused with the role named.
#[test]
fn vault_env_logs_in_with_a_service_account_token_checked_by_token_review() {
    let cluster = Cluster::start();
    let bao = Bao::dev();
    bao.kv2("db", json!({"password": "s3cr3t-from-bao"}));
    bao.policy("db", r#"path "secret/data/db" { capabilities = ["read"] }"#);
    cluster.kubernetes_auth(&bao, "db");
    cluster.service_account("shop", "other");

    let dir = tempfile::tempdir().unwrap();
    let login = |sa: &str| {
        let file = dir.path().join(format!("{sa}.jwt"));
        std::fs::write(&file, cluster.token("shop", sa, &["https://kubernetes.default.svc.cluster.local"])).unwrap();
        let path = file.display().to_string();
        vault_env(
            &[
                ("VAULT_ADDR", &bao.addr),
                ("VAULT_AUTH_METHOD", "kubernetes"),
                ("VAULT_ROLE", "app"),
                ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", &path),
                ("DB_PASSWORD", "vault:secret/data/db#password"),
            ],
            &["sh", "-c", "echo \"$DB_PASSWORD\""],
        )
    };
    let out = login("app");
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "s3cr3t-from-bao"), "{}", out.stderr);
    let refused = login("other");
    assert_eq!(refused.code, Some(77), "{}", refused.all());
    assert!(refused.stderr.contains("\"app\"") || refused.stderr.contains("role app"), "the role is named: {}", refused.stderr);
    assert!(!refused.all().contains("s3cr3t"), "{}", refused.all());

    // The webhook's vault-serviceaccount path: a Secret resolved with a token of shop/app that the
    // webhook gets from the real TokenRequest API, which OpenBao checks with TokenReview.
    bao.api(
        "POST",
        "auth/kubernetes/role/app-by-webhook",
        Some(json!({"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["shop"], "token_policies": ["db"],
                    "audience": "https://kubernetes.default.svc", "ttl": "10m"})),
    );
    // vault-serviceaccount needs verified callers: the API server's client certificate.
    let hook = kubernetes_auth_webhook(&cluster, &bao, &[]);
    register_secrets_webhook(&cluster, &hook, "secrets-only", json!({}));
    let secret = cluster.must(
        "POST",
        "/api/v1/namespaces/shop/secrets",
        Some(&json!({"metadata": {"name": "db", "annotations": {
                        "vault.security.banzaicloud.io/vault-serviceaccount": "app",
                        "vault.security.banzaicloud.io/vault-role": "app-by-webhook"}},
                     "stringData": {"password": "vault:secret/data/db#password"}})),
    );
    assert_eq!(unb64(secret["data"]["password"].as_str().unwrap_or_default()), "s3cr3t-from-bao", "{secret}\n{}", hook.log());
    assert!(!hook.log().contains("s3cr3t"), "{}", hook.log());
}

/// The recommended multi-tenant mode: each object is resolved as a ServiceAccount of its own
/// namespace (`VAULT_SERVICEACCOUNT`, a token from the real TokenRequest API that OpenBao checks
/// with TokenReview), so Vault's role bindings decide what each tenant reads, whatever role or
/// path its annotations name.
#[test]
fn objects_resolved_as_their_own_namespace_read_only_what_vault_binds_to_it() {
    let cluster = Cluster::start();
    let bao = Bao::dev();
    bao.kv2("shop/db", json!({"password": "shop-pw"}));
    bao.kv2("bar/db", json!({"password": "bar-pw"}));
    cluster.kubernetes_auth(&bao, "default");
    cluster.namespace("bar");
    for tenant in ["shop", "bar"] {
        bao.policy(tenant, &format!(r#"path "secret/data/{tenant}/*" {{ capabilities = ["read"] }}"#));
        bao.api(
            "POST",
            &format!("auth/kubernetes/role/tenant-{tenant}"),
            Some(json!({"bound_service_account_names": ["default"], "bound_service_account_namespaces": [tenant], "token_policies": [tenant],
                        "audience": "https://kubernetes.default.svc", "ttl": "10m"})),
        );
    }
    let hook = kubernetes_auth_webhook(&cluster, &bao, &[("VAULT_SERVICEACCOUNT", "default"), ("VAULT_ROLE", "tenant-{{.namespace}}")]);
    let tenants = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop", "bar"]}]});
    register_secrets_webhook(&cluster, &hook, "tenants", tenants);
    let secret = |name: &str, path: &str, annotations: Value| json!({"metadata": {"name": name, "annotations": annotations}, "stringData": {"password": format!("vault:secret/data/{path}#password")}});
    for tenant in ["shop", "bar"] {
        let stored = cluster.must("POST", &format!("/api/v1/namespaces/{tenant}/secrets"), Some(&secret("db", &format!("{tenant}/db"), json!({}))));
        assert_eq!(unb64(stored["data"]["password"].as_str().unwrap_or_default()), format!("{tenant}-pw"), "{stored}\n{}", hook.log());
    }
    // shop may not read bar's secret, neither directly nor by naming bar's role.
    let (code, answer) = cluster.api("POST", "/api/v1/namespaces/shop/secrets", Some(&secret("steal", "bar/db", json!({}))));
    assert!(code >= 400 && answer.to_string().contains("permission denied"), "{code} {answer}");
    let as_bar = json!({"vault.security.banzaicloud.io/vault-role": "tenant-bar"});
    let (code, answer) = cluster.api("POST", "/api/v1/namespaces/shop/secrets", Some(&secret("steal2", "bar/db", as_bar)));
    assert!(code >= 400 && answer.to_string().contains("login to"), "{code} {answer}");
    assert!(!answer.to_string().contains("bar-pw") && !hook.log().contains("bar-pw"));
}

/// The webhook as these tests run it: the cluster's API, `bao` with OpenBao's kubernetes auth,
/// and only the API server's client certificate verified; then `extra`.
fn kubernetes_auth_webhook(cluster: &Cluster, bao: &Bao, extra: &[(&str, &str)]) -> Webhook {
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let client_ca = cluster.webhook_client_ca.display().to_string();
    let mut env = vec![("KUBECONFIG", kubeconfig.as_str()), ("VAULT_ADDR", bao.addr.as_str()), ("VAULT_AUTH_METHOD", "kubernetes")];
    env.push(("TLS_CLIENT_CA_FILE", &client_ca));
    env.extend_from_slice(extra);
    Webhook::start(&env)
}

/// A MutatingWebhookConfiguration that sends Secret creations in the namespaces `selector`
/// matches (all for `{}`) to `hook`'s `/secrets`, failing closed.
fn register_secrets_webhook(cluster: &Cluster, hook: &Webhook, name: &str, selector: Value) {
    let ca = b64(&std::fs::read(&hook.ca).unwrap());
    cluster.must(
        "POST",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        Some(&json!({"metadata": {"name": name}, "webhooks": [{
            "name": "secrets.vault-secrets-webhook.test", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"url": format!("{}/secrets", hook.url), "caBundle": ca},
            "namespaceSelector": selector,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"]}]}]})),
    );
}

fn chart() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/charts/vault-secrets-webhook").display().to_string()
}

/// The installed chart's MutatingWebhookConfiguration, pointed at our webhook process: the API
/// server cannot reach a Service here (no kube-proxy, and Endpoints may not name a loopback
/// address), so each entry's `service` becomes a `url` on 127.0.0.1 with the same path, and the
/// `caBundle` is the test's. Everything else (rules, selectors, policies, timeouts) is the chart's.
fn point_webhooks_at(cluster: &Cluster, name: &str, hook: &Webhook, probe_labels: serde_json::Value) -> serde_json::Value {
    let path = format!("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}");
    let config = cluster.must("GET", &path, None);
    let ca = b64(&std::fs::read(&hook.ca).unwrap());
    let ops: Vec<serde_json::Value> = config["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let service_path = w["clientConfig"]["service"]["path"].as_str().expect("a service path");
            json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig"), "value": {"url": format!("{}{service_path}", hook.url), "caBundle": ca}})
        })
        .collect();
    let (code, patched) = cluster.api_as(&cluster.token, "PATCH", &path, Some(&json!(ops)), "application/json-patch+json");
    assert_eq!(code, 200, "{patched}");
    // The API server picks the change up through an informer: wait until a dry run is mutated.
    cluster.namespace_with("probe", probe_labels);
    let probe = || cluster.api("POST", "/api/v1/namespaces/probe/pods?dryRun=All", Some(&pod("probe", json!({}), json!({})))).1;
    assert!(busy_wait(Duration::from_secs(20), || probe()["spec"]["containers"][0]["command"] == json!(["/vault/vault-env"])), "{}", probe());
    config
}

fn pod(name: &str, annotations: serde_json::Value, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:1", "command": ["/app"], "args": ["--serve"],
                                 "env": [{"name": "DB_PASSWORD", "value": "vault:secret/data/db#password"}]}]},
    })
}

/// Helm installs the chart into a real API server; the API server then calls our webhook for
/// pods and Secrets as the chart configures it, stores what it answers, and applies the chart's
/// selectors and failure policies.
#[test]
fn helm_installs_the_chart_and_the_api_server_calls_the_webhook() {
    let cluster = Cluster::start();
    let lint = cluster.helm(&["lint", &chart()]);
    assert_eq!(lint.code, Some(0), "{}", lint.all());
    assert!(lint.stdout.contains("0 chart(s) failed") && !lint.all().contains("[WARNING]"), "{}", lint.all());

    let bao = Bao::dev();
    bao.kv2("dockerrepo", json!({"DOCKER_REPO_USER": "robot", "DOCKER_REPO_PASSWORD": "pa55-from-bao"}));
    let vault_addr = format!("env.VAULT_ADDR={}", bao.addr);
    let install = cluster.helm(&[
        "install",
        "vsw",
        &chart(),
        "--namespace",
        "vault-infra",
        "--create-namespace",
        "--set",
        &vault_addr,
        "--set",
        "podsFailurePolicy=Fail",
        "--set",
        "reinvocationPolicy=IfNeeded",
        "--set",
        "configMapMutation=true",
        "--set",
        "customResourceMutations={widgets}",
    ]);
    assert_eq!(install.code, Some(0), "{}", install.all());
    for (kind, path) in [
        ("Deployment", "/apis/apps/v1/namespaces/vault-infra/deployments/vsw-vault-secrets-webhook"),
        ("Service", "/api/v1/namespaces/vault-infra/services/vsw-vault-secrets-webhook"),
        ("TLS Secret", "/api/v1/namespaces/vault-infra/secrets/vsw-vault-secrets-webhook-tls"),
    ] {
        assert_eq!(cluster.api("GET", path, None).0, 200, "{kind} not installed");
    }

    let kubeconfig = cluster.kubeconfig.display().to_string();
    // The webhook answers only callers with the API server's client certificate (its
    // AdmissionConfiguration kubeConfigFile): the API server gets answers, a plain client a 401.
    let client_ca = cluster.webhook_client_ca.display().to_string();
    // The webhook logs in with its own service-account JWT (OpenBao's jwt method at the default
    // mount, role `default`), as a default install does: the seed's Secret names that role and
    // mount, which objects may always choose.
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = jwt_keypair(keys.path());
    bao.enable_auth("kubernetes", "jwt");
    bao.api(
        "POST",
        "auth/kubernetes/config",
        Some(json!({"jwt_validation_pubkeys": [public], "bound_issuer": "https://kubernetes.default.svc.cluster.local"})),
    );
    bao.policy("dockerrepo", r#"path "secret/data/dockerrepo" { capabilities = ["read"] }"#);
    bao.api(
        "POST",
        "auth/kubernetes/role/default",
        Some(json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"], "bound_subject": "system:serviceaccount:vault-infra:vsw",
                    "token_policies": ["dockerrepo"], "token_ttl": "300s"})),
    );
    let jwt = keys.path().join("webhook-token");
    std::fs::write(&jwt, mint_sa_jwt(&key, "vault-infra", "vsw", "vault", 600)).unwrap();
    let jwt = jwt.display().to_string();
    let hook = Webhook::start(&[
        ("KUBECONFIG", &kubeconfig),
        ("VAULT_ADDR", &bao.addr),
        ("KUBERNETES_SERVICE_ACCOUNT_TOKEN", &jwt),
        ("TLS_CLIENT_CA_FILE", &client_ca),
    ]);
    let chart_config = point_webhooks_at(&cluster, "vsw-vault-secrets-webhook", &hook, json!({}));
    let forged = fixture("pod-create-review.json");
    let (code, answer) = hook.post_without_certificate("/pods", &forged);
    assert_eq!(code, 401, "{answer}");
    let names: Vec<&str> = chart_config["webhooks"].as_array().unwrap().iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "pods.vsw-vault-secrets-webhook.admission.banzaicloud.com",
            "secrets.vsw-vault-secrets-webhook.admission.banzaicloud.com",
            "configmaps.vsw-vault-secrets-webhook.admission.banzaicloud.com",
            "objects.vsw-vault-secrets-webhook.admission.banzaicloud.com"
        ]
    );
    let pods_hook = &chart_config["webhooks"][0];
    assert_eq!(
        (pods_hook["failurePolicy"].as_str(), pods_hook["reinvocationPolicy"].as_str(), pods_hook["timeoutSeconds"].as_i64()),
        (Some("Fail"), Some("IfNeeded"), Some(10))
    );
    assert_eq!(pods_hook["sideEffects"], "NoneOnDryRun");

    cluster.namespace("shop");
    let pods = "/api/v1/namespaces/shop/pods";

    // A pod with a vault: value is stored mutated, once, and reads back as a valid Pod.
    let stored = cluster.must("POST", pods, Some(&pod("web", json!({}), json!({}))));
    let read: k8s_openapi::api::core::v1::Pod = serde_json::from_value(cluster.must("GET", &format!("{pods}/web"), None)).expect("a valid Pod");
    let spec = read.spec.as_ref().unwrap();
    assert_eq!(spec.containers[0].command.as_deref(), Some(&["/vault/vault-env".to_string()][..]), "{stored}");
    assert_eq!(spec.containers[0].args.as_deref(), Some(&["/app".to_string(), "--serve".to_string()][..]), "wrapped once");
    let inits: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(inits, ["copy-vault-env"], "injected once, reinvocation included");
    assert!(spec.volumes.iter().flatten().any(|v| v.name == "vault-env"));
    assert!(spec.volumes.iter().flatten().any(|v| v.name.starts_with("kube-api-access")), "the API server's own admission still applies");
    let env = |p: &k8s_openapi::api::core::v1::Pod, name: &str| {
        p.spec.as_ref().unwrap().containers[0].env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone())
    };
    assert_eq!(env(&read, "VAULT_ADDR").as_deref(), Some(bao.addr.as_str()), "the chart's env reaches the pods");
    assert_eq!(env(&read, "DB_PASSWORD").as_deref(), Some("vault:secret/data/db#password"), "no secret in the pod spec");

    // References only behind an `optional: true` ConfigMap (read through this API server, as
    // Bank-Vaults reads them): wrapped; an optional one that does not exist holds nothing.
    cluster.must(
        "POST",
        "/api/v1/namespaces/shop/configmaps",
        Some(&json!({"metadata": {"name": "optional-settings", "labels": {"security.banzaicloud.io/mutate": "skip"}}, "data": {"URL": "vault:secret/data/db#password"}})),
    );
    let from = |name: &str, source: &str| {
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "app:1", "command": ["/app"],
               "envFrom": [{"configMapRef": {"name": source, "optional": true}}]}]}})
    };
    let wrapped = cluster.must("POST", pods, Some(&from("optional-source", "optional-settings")));
    assert_eq!(wrapped["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]), "{wrapped}");
    let plain = cluster.must("POST", pods, Some(&from("optional-missing", "no-such-settings")));
    assert_eq!(plain["spec"]["containers"][0]["command"], json!(["/app"]), "{plain}");

    // An annotation we do not act on: admitted with the webhook's warning, as kubectl shows it.
    let (warned, warnings) =
        cluster.create_with_warnings(pods, &pod("warned", json!({"vault.security.banzaicloud.io/vault-ct-cpus": "50m"}), json!({})));
    assert_eq!(warned["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]));
    assert!(warnings.iter().any(|w| w.contains("vault.security.banzaicloud.io/vault-ct-cpus: not a known annotation")), "{warnings:?}");

    // vault-agent with the pod's own configuration: a sidecar (or, with vault-agent: "true", an
    // init container), stored valid by the API server.
    let sidecar = cluster.must(
        "POST",
        pods,
        Some(&pod("agent-sidecar", json!({"vault.security.banzaicloud.io/vault-agent-configmap": "agent-config"}), json!({}))),
    );
    let stored: k8s_openapi::api::core::v1::Pod = serde_json::from_value(sidecar.clone()).expect("a valid Pod");
    let names: Vec<&str> = stored.spec.as_ref().unwrap().containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["vault-agent", "app"], "{sidecar}");
    assert_eq!(sidecar["spec"]["shareProcessNamespace"], json!(true));
    let agent_mounts = sidecar["spec"]["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(
        agent_mounts.iter().any(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"),
        "the token mount the API server added: {sidecar}"
    );
    let agent_pod = |name: &str, key: &str| {
        let annotations =
            json!({"vault.security.banzaicloud.io/vault-agent-configmap": "agent-config", format!("vault.security.banzaicloud.io/{key}"): "true"});
        cluster.must("POST", pods, Some(&pod(name, annotations, json!({}))))
    };
    let init = agent_pod("agent-init", "vault-agent");
    assert_eq!(init["spec"]["initContainers"][0]["name"], "vault-agent", "{init}");
    assert_eq!(init["spec"]["initContainers"][1]["name"], "copy-vault-env", "{init}");
    let native = agent_pod("agent-native", "vault-agent-native-sidecar");
    assert_eq!(
        (native["spec"]["initContainers"][0]["name"].as_str(), native["spec"]["initContainers"][0]["restartPolicy"].as_str()),
        (Some("vault-agent"), Some("Always")),
        "a native sidecar, accepted by the API server: {native}"
    );

    // consul-template: a sidecar, an init container (vault-ct-once), or a native sidecar, each
    // after the login agent, stored valid by the API server.
    let ct_pod = |name: &str, extra: Value| {
        let mut annotations = json!({"vault.security.banzaicloud.io/vault-ct-configmap": "ct-config"});
        annotations.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let stored = cluster.must("POST", pods, Some(&pod(name, annotations, json!({}))));
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(stored.clone()).expect("a valid Pod");
        let names = |list: &str| -> Vec<String> {
            stored["spec"][list].as_array().into_iter().flatten().map(|c| c["name"].as_str().unwrap().to_string()).collect()
        };
        (names("initContainers"), names("containers"), stored)
    };
    let (inits, containers, stored) = ct_pod("ct-sidecar", json!({}));
    assert_eq!(inits, ["vault-agent", "copy-vault-env"], "{stored}");
    assert_eq!(containers, ["consul-template", "app"], "{stored}");
    let (inits, containers, _) = ct_pod("ct-once", json!({"vault.security.banzaicloud.io/vault-ct-once": "true"}));
    assert_eq!(inits, ["vault-agent", "copy-vault-env", "consul-template"]);
    assert_eq!(containers, ["app"]);
    let (inits, _, stored) = ct_pod("ct-native", json!({"vault.security.banzaicloud.io/vault-ct-native-sidecar": "true"}));
    assert_eq!(inits, ["vault-agent", "copy-vault-env", "consul-template"]);
    assert_eq!(stored["spec"]["initContainers"][2]["restartPolicy"], "Always");
    // Bank-Vaults' case A: vault-agent: "true" alone, an agent that logs in for vault-env.
    let login_only = cluster.must("POST", pods, Some(&pod("agent-login", json!({"vault.security.banzaicloud.io/vault-agent": "true"}), json!({}))));
    let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(login_only.clone()).expect("a valid Pod");
    assert_eq!(login_only["spec"]["initContainers"][0]["name"], "vault-agent", "{login_only}");
    assert!(login_only["spec"]["containers"][0]["env"].as_array().unwrap().iter().any(|e| e["name"] == "VAULT_TOKEN_FILE"), "{login_only}");

    // The same spec again: mutated exactly once too.
    let again = cluster.must("POST", pods, Some(&pod("web-2", json!({}), json!({}))));
    assert_eq!(again["spec"]["initContainers"].as_array().map(Vec::len), Some(1), "{again}");

    // Another webhook, called after ours, adds a container with a vault: value: the API server
    // calls ours again (reinvocationPolicy IfNeeded), which wraps the new container and nothing twice.
    let sidecars = SidecarWebhook::start();
    cluster.namespace_with("mesh", json!({"sidecars": "on"}));
    cluster.must(
        "POST",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        Some(&json!({"metadata": {"name": "zz-sidecar-injector"}, "webhooks": [{
            "name": "sidecar.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "clientConfig": {"url": sidecars.url, "caBundle": b64(&std::fs::read(&sidecars.ca).unwrap())},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"sidecars": "on"}}}]})),
    );
    let mesh_pods = "/api/v1/namespaces/mesh/pods";
    let has_sidecar = || {
        cluster.api("POST", &format!("{mesh_pods}?dryRun=All"), Some(&pod("probe", json!({}), json!({})))).1["spec"]["containers"][1]["name"]
            == "sidecar"
    };
    assert!(busy_wait(Duration::from_secs(20), has_sidecar), "the sidecar webhook is not called");
    let meshed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(cluster.must("POST", mesh_pods, Some(&pod("meshed", json!({}), json!({}))))).unwrap();
    let spec = meshed.spec.as_ref().unwrap();
    let commands: Vec<String> = spec.containers.iter().map(|c| format!("{} {:?} {:?}", c.name, c.command, c.args)).collect();
    assert_eq!(
        commands,
        [r#"app Some(["/vault/vault-env"]) Some(["/app", "--serve"])"#, r#"sidecar Some(["/vault/vault-env"]) Some(["/sidecar"])"#],
        "{meshed:?}"
    );
    assert_eq!(spec.init_containers.iter().flatten().filter(|c| c.name == "copy-vault-env").count(), 1, "{meshed:?}");
    assert_eq!(spec.volumes.iter().flatten().filter(|v| v.name == "vault-env").count(), 1, "{meshed:?}");
    let sidecar_env: Vec<&str> = spec.containers[1].env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(sidecar_env.iter().filter(|n| **n == "VAULT_ADDR").count(), 1, "{sidecar_env:?}");
    drop(sidecars);
    cluster.must("DELETE", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/zz-sidecar-injector", None);

    // A pod whose references are behind envFrom: the webhook reads the Secret from this API server.
    // (The Secret opts out of resolution with the label, so it is stored with the reference.)
    cluster.must(
        "POST",
        "/api/v1/namespaces/shop/secrets",
        Some(&json!({"metadata": {"name": "db-ref", "labels": {"security.banzaicloud.io/mutate": "skip"}},
                     "stringData": {"DB_PASSWORD": "vault:secret/data/db#password"}})),
    );
    let mut indirect = pod("indirect", json!({}), json!({}));
    indirect["spec"]["containers"][0]["env"] = json!([]);
    indirect["spec"]["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "db-ref"}}]);
    let indirect = cluster.must("POST", pods, Some(&indirect));
    assert_eq!(indirect["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]), "{indirect}");
    // ... and behind valueFrom.
    let mut value_from = pod("value-from", json!({}), json!({}));
    value_from["spec"]["containers"][0]["env"] =
        json!([{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-ref", "key": "DB_PASSWORD"}}}]);
    let value_from = cluster.must("POST", pods, Some(&value_from));
    assert_eq!(value_from["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]), "{value_from}");
    assert_eq!(value_from["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"], "db-ref", "the reference stays a reference");
    let mut plain = pod("plain", json!({}), json!({}));
    plain["spec"]["containers"][0]["env"] = json!([{"name": "X", "value": "plain"}]);
    let plain = cluster.must("POST", pods, Some(&plain));
    assert_eq!(plain["spec"]["containers"][0]["command"], json!(["/app"]), "nothing to resolve, nothing injected: {plain}");

    // Daemon mode by annotation.
    let daemon = cluster.must("POST", pods, Some(&pod("worker", json!({"vault.security.banzaicloud.io/vault-env-daemon": "true"}), json!({}))));
    let daemon: k8s_openapi::api::core::v1::Pod = serde_json::from_value(daemon).unwrap();
    assert_eq!(env(&daemon, "VAULT_ENV_DAEMON").as_deref(), Some("true"));

    // Opted out by annotation (our decision) or by label (the chart's objectSelector).
    for (name, annotations, labels) in [
        ("skip-a", json!({"vault.security.banzaicloud.io/mutate": "skip"}), json!({})),
        ("skip-l", json!({}), json!({"security.banzaicloud.io/mutate": "skip"})),
    ] {
        let p = cluster.must("POST", pods, Some(&pod(name, annotations, labels)));
        assert_eq!(p["spec"]["containers"][0]["command"], json!(["/app"]), "{name} was mutated: {p}");
    }

    // A dry run is answered mutated and stores nothing.
    let dry = cluster.must("POST", &format!("{pods}?dryRun=All"), Some(&pod("dry", json!({}), json!({}))));
    assert_eq!(dry["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]));
    assert_eq!(cluster.api("GET", &format!("{pods}/dry"), None).0, 404);

    // A bad annotation: refused with our message, naming the pod and the annotation.
    let (code, refused) = cluster.api("POST", pods, Some(&pod("bad", json!({"vault.security.banzaicloud.io/vault-env-daemon": "maybe"}), json!({}))));
    let message = refused["message"].as_str().unwrap_or_default();
    assert_eq!(code, 400, "{refused}");
    assert!(
        message.contains("vault-secrets-webhook")
            && message.contains("pod shop/bad")
            && message.contains("vault.security.banzaicloud.io/vault-env-daemon"),
        "{message}"
    );

    // The Bank-Vaults documentation's docker-registry Secret: stored with the values from OpenBao.
    let docker = json!({"auths": {"https://index.docker.io/v1/": {
        "username": "vault:secret/data/dockerrepo#DOCKER_REPO_USER",
        "password": "vault:secret/data/dockerrepo#DOCKER_REPO_PASSWORD",
        "auth": b64(b"vault:secret/data/dockerrepo#DOCKER_REPO_USER:vault:secret/data/dockerrepo#DOCKER_REPO_PASSWORD"),
    }}});
    let secret = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
               "metadata": {"name": name, "annotations": {
                   "vault.security.banzaicloud.io/vault-addr": bao.addr,
                   "vault.security.banzaicloud.io/vault-role": "default",
                   "vault.security.banzaicloud.io/vault-skip-verify": "true",
                   "vault.security.banzaicloud.io/vault-path": "kubernetes"}},
               "data": {".dockerconfigjson": b64(docker.to_string().as_bytes())}})
    };
    let secrets = "/api/v1/namespaces/shop/secrets";
    // A dry run reaches no Vault: the answer still holds the references.
    let dry = cluster.must("POST", &format!("{secrets}?dryRun=All"), Some(&secret("regcred")));
    assert!(unb64(dry["data"][".dockerconfigjson"].as_str().unwrap()).contains("vault:secret"), "{dry}");
    cluster.must("POST", secrets, Some(&secret("regcred")));
    let stored = cluster.must("GET", &format!("{secrets}/regcred"), None);
    let config: serde_json::Value = serde_json::from_str(&unb64(stored["data"][".dockerconfigjson"].as_str().unwrap())).unwrap();
    let hub = &config["auths"]["https://index.docker.io/v1/"];
    assert_eq!((hub["username"].as_str(), hub["password"].as_str()), (Some("robot"), Some("pa55-from-bao")), "{config}");
    assert_eq!(unb64(hub["auth"].as_str().unwrap()), "robot:pa55-from-bao");

    // ConfigMaps, with configMapMutation on.
    let cm = cluster.must(
        "POST",
        "/api/v1/namespaces/shop/configmaps",
        Some(&json!({"metadata": {"name": "settings"}, "data": {"user": "vault:secret/data/dockerrepo#DOCKER_REPO_USER", "plain": "x"}})),
    );
    assert_eq!((cm["data"]["user"].as_str(), cm["data"]["plain"].as_str()), (Some("robot"), Some("x")), "{cm}");

    // A custom resource (a CRD the test installs), with customResourceMutations naming it.
    let widgets = cluster.crd("example.com", "widgets", "Widget", "shop");
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                        "spec": {"login": {"user": "vault:secret/data/dockerrepo#DOCKER_REPO_USER"}, "size": 3}});
    let stored = cluster.must("POST", &widgets, Some(&widget));
    assert_eq!((stored["spec"]["login"]["user"].as_str(), stored["spec"]["size"].as_i64()), (Some("robot"), Some(3)), "{stored}");

    // A container without command: its image's ENTRYPOINT/CMD from the loopback docker-registry.
    let registry = Registry::plain();
    registry.push("app", "1", "oci");
    let mut commandless = pod("commandless", json!({}), json!({}));
    commandless["spec"]["containers"][0]["image"] = json!(format!("{}/app:1", registry.host));
    commandless["spec"]["containers"][0].as_object_mut().unwrap().remove("command");
    commandless["spec"]["containers"][0].as_object_mut().unwrap().remove("args");
    let commandless = cluster.must("POST", pods, Some(&commandless));
    assert_eq!(commandless["spec"]["containers"][0]["args"], json!(["/bin/app", "--flag"]), "{commandless}");

    // The webhook down: pods fail (failurePolicy Fail), Secrets pass unresolved (Ignore).
    drop(hook);
    let (code, down) = cluster.api("POST", pods, Some(&pod("while-down", json!({}), json!({}))));
    assert_eq!(code, 500, "{down}");
    assert!(down["message"].as_str().unwrap_or_default().contains("failed calling webhook"), "{down}");
    let passed = cluster.must("POST", secrets, Some(&secret("while-down")));
    assert!(unb64(passed["data"][".dockerconfigjson"].as_str().unwrap()).contains("vault:secret"), "{passed}");
}

/// A webhook that does not answer within `timeoutSeconds` costs the request that long, then the
/// API server's error (failurePolicy Fail) or admission without it (Ignore), never a hang.
#[test]
fn a_webhook_slower_than_its_timeout_gives_the_api_servers_answer() {
    let cluster = Cluster::start();
    cluster.namespace("shop");
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || silent.incoming().take(64).filter_map(Result::ok).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = ca_and_cert(dir.path(), "silent", "IP:127.0.0.1");
    let config = |policy: &str| {
        json!({"metadata": {"name": "slow"}, "webhooks": [{
            "name": "pods.slow.test", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": policy,
            "timeoutSeconds": 2,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/pods"), "caBundle": b64(&std::fs::read(&ca).unwrap())},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]})
    };
    let configs = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
    cluster.must("POST", configs, Some(&config("Fail")));
    // Until the API server's informer has the new configuration, pods are admitted without it.
    let (mut code, mut answer, mut took, mut tries) = (0, json!(null), Duration::ZERO, 0);
    while code != 500 && tries < 20 {
        tries += 1;
        let started = std::time::Instant::now();
        (code, answer) = cluster.api("POST", "/api/v1/namespaces/shop/pods?dryRun=All", Some(&pod("slow-fail", json!({}), json!({}))));
        took = started.elapsed();
    }
    assert_eq!(code, 500, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("failed calling webhook") && message.contains("pods.slow.test"), "{message}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "took {took:?}");

    let patch = json!([{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]);
    let (code, patched) = cluster.api_as(&cluster.token, "PATCH", &format!("{configs}/slow"), Some(&patch), "application/json-patch+json");
    assert_eq!(code, 200, "{patched}");
    let admitted = busy_wait(Duration::from_secs(30), || {
        let started = std::time::Instant::now();
        let (code, p) = cluster.api("POST", "/api/v1/namespaces/shop/pods?dryRun=All", Some(&pod("slow-ignore", json!({}), json!({}))));
        code == 201 && p["spec"]["containers"][0]["command"] == json!(["/app"]) && started.elapsed() < Duration::from_secs(10)
    });
    assert!(admitted, "with failurePolicy Ignore the pod is admitted after the timeout");
    drop(cluster);
    drop(held);
}

/// The chart as users install it: with no values at all (then uninstalled cleanly), and with the
/// deployment and selector values users set, which the API server must accept and which do what
/// they say: a per-kind `matchLabels` namespace selector, a ServiceMonitor only once the
/// Prometheus Operator's CRD is served.
#[test]
fn the_chart_installs_with_its_defaults_and_with_the_values_users_set() {
    let cluster = Cluster::start();
    let mwc = |name: &str| format!("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}");

    // Defaults: pods and Secrets, Ignore, the Service with the generated CA.
    let install = cluster.helm(&["install", "vswh", &chart(), "--namespace", "vswh", "--create-namespace"]);
    assert_eq!(install.code, Some(0), "{}", install.all());
    let config = cluster.must("GET", &mwc("vswh-vault-secrets-webhook"), None);
    let hooks = config["webhooks"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = hooks
        .iter()
        .map(|h| (h["name"].as_str().unwrap(), h["failurePolicy"].as_str().unwrap(), h["clientConfig"]["service"]["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("pods.vswh-vault-secrets-webhook.admission.banzaicloud.com", "Ignore", "/pods"),
            ("secrets.vswh-vault-secrets-webhook.admission.banzaicloud.com", "Ignore", "/secrets")
        ]
    );
    let tls = cluster.must("GET", "/api/v1/namespaces/vswh/secrets/vswh-vault-secrets-webhook-tls", None);
    assert_eq!(hooks[0]["clientConfig"]["caBundle"], tls["data"]["ca.crt"], "the caBundle is the generated CA");
    let excluded = |selector: &serde_json::Value| -> Vec<String> {
        selector["matchExpressions"].as_array().unwrap().iter().map(|e| format!("{}!={}", e["key"].as_str().unwrap(), e["values"][0])).collect()
    };
    assert_eq!(excluded(&hooks[0]["namespaceSelector"]), ["kubernetes.io/metadata.name!=\"kube-system\"", "kubernetes.io/metadata.name!=\"vswh\""]);
    assert_eq!(excluded(&hooks[1]["objectSelector"]), ["owner!=\"helm\"", "security.banzaicloud.io/mutate!=\"skip\""]);
    let policy = cluster.must("GET", "/apis/networking.k8s.io/v1/namespaces/vswh/networkpolicies/vswh-vault-secrets-webhook", None);
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8443, "{policy}");
    // A default install cannot verify its callers: it says so, and what to do.
    assert!(
        install.stdout.contains("The webhook cannot verify its callers") && install.stdout.contains("AdmissionConfiguration"),
        "{}",
        install.stdout
    );
    // No right to mint ServiceAccount tokens unless vault-serviceaccount is enabled.
    let role = cluster.must("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/vswh-vault-secrets-webhook", None);
    assert!(!role.to_string().contains("serviceaccounts/token"), "{role}");
    let uninstall = cluster.helm(&["uninstall", "vswh", "--namespace", "vswh"]);
    assert_eq!(uninstall.code, Some(0), "{}", uninstall.all());
    assert_eq!(cluster.api("GET", &mwc("vswh-vault-secrets-webhook"), None).0, 404, "uninstall leaves no webhook behind");

    // The values users set most, from a values file as they would write it.
    cluster.namespace("infra");
    cluster.service_account("infra", "existing-sa");
    let values = cluster.dir.path().join("values.yaml");
    std::fs::write(
        &values,
        r#"
env: {VAULT_ADDR: "https://vault.infra:8200"}
envRaw:
  - name: VAULT_TOKEN
    valueFrom: {secretKeyRef: {name: webhook-token, key: token}}
podAnnotations: {team: platform}
labels: {cost-center: "42"}
priorityClassName: system-cluster-critical
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
volumes: [{name: extra-ca, configMap: {name: extra-ca}}]
volumeMounts: [{name: extra-ca, mountPath: /etc/extra-ca, readOnly: true}]
serviceAccount: {create: false, name: existing-sa}
rbac: {authDelegatorRole: {enabled: true}}
service: {annotations: {example.com/lb: internal}}
metrics: {enabled: true, serviceMonitor: {enabled: true}}
podsFailurePolicy: Fail
pods:
  namespaceSelector:
    matchLabels: {vault-injection: enabled}
"#,
    )
    .unwrap();
    let values = values.display().to_string();
    let client_ca = std::fs::read_to_string(&cluster.webhook_client_ca).unwrap();
    let auth = cluster.dir.path().join("auth.json");
    std::fs::write(
        &auth,
        json!({"clientAuth": {"caBundle": client_ca}, "networkPolicy": {"podCIDRs": ["10.244.0.0/16", "fd00:10:244::/56"]}}).to_string(),
    )
    .unwrap();
    let auth = auth.display().to_string();
    let install = cluster.helm(&["install", "vsw", &chart(), "--namespace", "infra", "-f", &values, "-f", &auth]);
    assert_eq!(install.code, Some(0), "{}", install.all());
    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(cluster.must("GET", "/apis/apps/v1/namespaces/infra/deployments/vsw-vault-secrets-webhook", None)).unwrap();
    let template = deployment.spec.unwrap().template;
    let (meta, spec) = (template.metadata.unwrap(), template.spec.unwrap());
    let annotations = meta.annotations.unwrap_or_default();
    assert_eq!(annotations.get("team").map(String::as_str), Some("platform"));
    assert_eq!(annotations.get("prometheus.io/scrape").map(String::as_str), Some("true"));
    assert_eq!(meta.labels.unwrap_or_default().get("cost-center").map(String::as_str), Some("42"));
    assert_eq!(
        (spec.priority_class_name.as_deref(), spec.host_network, spec.dns_policy.as_deref(), spec.service_account_name.as_deref()),
        (Some("system-cluster-critical"), Some(true), Some("ClusterFirstWithHostNet"), Some("existing-sa"))
    );
    assert!(spec.volumes.iter().flatten().any(|v| v.name == "extra-ca"));
    let container = &spec.containers[0];
    assert!(container.volume_mounts.iter().flatten().any(|m| m.mount_path == "/etc/extra-ca"));
    let env: Vec<&str> = container.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains(&"VAULT_TOKEN") && env.contains(&"VAULT_ADDR") && env.contains(&"TLS_CLIENT_CA_FILE"), "{env:?}");
    let stored_ca = cluster.must("GET", "/api/v1/namespaces/infra/configmaps/vsw-vault-secrets-webhook-client-ca", None);
    assert_eq!(stored_ca["data"]["ca.crt"].as_str(), Some(client_ca.as_str()));
    let policy = cluster.must("GET", "/apis/networking.k8s.io/v1/namespaces/infra/networkpolicies/vsw-vault-secrets-webhook", None);
    assert_eq!(policy["spec"]["ingress"][0]["from"][0]["ipBlock"], json!({"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16"]}), "{policy}");
    assert_eq!(policy["spec"]["ingress"][0]["from"][1]["ipBlock"], json!({"cidr": "::/0", "except": ["fd00:10:244::/56"]}), "{policy}");
    assert_eq!(cluster.api("GET", "/api/v1/namespaces/infra/serviceaccounts/vsw-vault-secrets-webhook", None).0, 404, "serviceAccount.create=false");
    let delegator = cluster.must("GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/vsw-vault-secrets-webhook-auth-delegator", None);
    assert_eq!(
        (delegator["roleRef"]["name"].as_str(), delegator["subjects"][0]["name"].as_str()),
        (Some("system:auth-delegator"), Some("existing-sa"))
    );
    let manifest = cluster.helm(&["get", "manifest", "vsw", "--namespace", "infra"]);
    assert!(!manifest.stdout.contains("kind: ServiceMonitor"), "no ServiceMonitor without the Prometheus Operator's CRD");

    // Once the CRD is served, the same values make a ServiceMonitor.
    let monitors = cluster.crd("monitoring.coreos.com", "servicemonitors", "ServiceMonitor", "infra");
    let upgrade = cluster.helm(&["upgrade", "vsw", &chart(), "--namespace", "infra", "-f", &values, "-f", &auth]);
    assert_eq!(upgrade.code, Some(0), "{}", upgrade.all());
    let monitor = cluster.must("GET", &format!("{monitors}/vsw-vault-secrets-webhook"), None);
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics", "{monitor}");

    // The API server's addresses, when known, are all the NetworkPolicy admits; ServiceAccount
    // tokens are granted only where vault-serviceaccount is enabled, namespace by namespace.
    cluster.namespace("tenant-a");
    let narrow = cluster.dir.path().join("narrow.json");
    std::fs::write(
        &narrow,
        json!({"networkPolicy": {"apiServerCIDRs": ["172.20.0.0/28", "fd00:20::/64"]}, "clientAuth": {"allowedNames": ["api.cluster.local"]},
               "vaultServiceAccount": {"enabled": true, "namespaces": ["tenant-a"]}})
        .to_string(),
    )
    .unwrap();
    let narrow = narrow.display().to_string();
    let upgrade = cluster.helm(&["upgrade", "vsw", &chart(), "--namespace", "infra", "-f", &values, "-f", &auth, "-f", &narrow]);
    assert_eq!(upgrade.code, Some(0), "{}", upgrade.all());
    let policy = cluster.must("GET", "/apis/networking.k8s.io/v1/namespaces/infra/networkpolicies/vsw-vault-secrets-webhook", None);
    assert_eq!(
        policy["spec"]["ingress"][0]["from"],
        json!([{"ipBlock": {"cidr": "172.20.0.0/28"}}, {"ipBlock": {"cidr": "fd00:20::/64"}}]),
        "{policy}"
    );
    let role =
        cluster.must("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/tenant-a/roles/vsw-vault-secrets-webhook-serviceaccount-tokens", None);
    assert_eq!(role["rules"][0]["resources"], json!(["serviceaccounts/token"]), "{role}");
    let binding = cluster.must(
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/tenant-a/rolebindings/vsw-vault-secrets-webhook-serviceaccount-tokens",
        None,
    );
    assert_eq!(binding["subjects"][0]["name"], "existing-sa", "{binding}");
    let cluster_role = cluster.must("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/vsw-vault-secrets-webhook", None);
    assert!(!cluster_role.to_string().contains("serviceaccounts/token"), "{cluster_role}");
    let deployment = cluster.must("GET", "/apis/apps/v1/namespaces/infra/deployments/vsw-vault-secrets-webhook", None);
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env.as_array().unwrap().contains(&json!({"name": "TLS_CLIENT_ALLOWED_NAMES", "value": "api.cluster.local"})), "{env}");
    assert!(upgrade.stdout.contains("names api.cluster.local"), "{}", upgrade.stdout);

    // The per-kind namespace selector: pods are mutated only in namespaces labelled for it.
    let hook = Webhook::start(&[("VAULT_ADDR", "https://vault.infra:8200")]);
    point_webhooks_at(&cluster, "vsw-vault-secrets-webhook", &hook, json!({"vault-injection": "enabled"}));
    cluster.namespace_with("opted-in", json!({"vault-injection": "enabled"}));
    cluster.namespace("other");
    let opted_in = cluster.must("POST", "/api/v1/namespaces/opted-in/pods", Some(&pod("web", json!({}), json!({}))));
    assert_eq!(opted_in["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]), "{opted_in}");
    let other = cluster.must("POST", "/api/v1/namespaces/other/pods", Some(&pod("web", json!({}), json!({}))));
    assert_eq!(other["spec"]["containers"][0]["command"], json!(["/app"]), "{other}");
}
