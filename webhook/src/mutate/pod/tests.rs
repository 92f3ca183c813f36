//! The pod patch, case by case (Bank-Vaults' cases by number where they have one). Test code only:
//! `pod.rs` declares this module under `#[cfg(test)]`.
use super::*;
use crate::annotations::agent::{AgentConfig, AgentImage, CpuMemory, LoginAgent};
use crate::annotations::consul_template::CtConfig;
use crate::annotations::{ObjectInfo, PodConfig, PodDefaults};
use crate::model::from_json;
use k8s_openapi::api::core::v1::Pod as K8sPod;
use serde_json::Value;
use std::time::Duration;

/// The shared `vaultConfig` of Bank-Vaults' `pkg/webhook/pod_test.go`.
fn var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn bank_vaults_config() -> PodConfig {
    let info = ObjectInfo { name: "", namespace: "default", service_account: "" };
    let mut c = PodConfig::from_annotations(&BTreeMap::new(), &BTreeMap::new(), &info, &PodDefaults::default()).unwrap();
    c.vault.addr = "addr".into();
    c.vault.path = "path".into();
    c.vault.role = "role".into();
    c.vault.auth_method = "jwt".into();
    c.passthrough = "vaultEnvPassThrough".into();
    c.vault.client_timeout = Duration::from_secs(10);
    c.run_as_non_root = true;
    c.run_as_user = 1000;
    c.run_as_group = 1000;
    c.log_level = String::new();
    c.vault.transit_batch_size = 0;
    c
}

/// Bank-Vaults' "STD9" block, with booleans as real booleans.
fn std9() -> Vec<Value> {
    vec![
        var("VAULT_ADDR", "addr"),
        var("VAULT_SKIP_VERIFY", "false"),
        var("VAULT_AUTH_METHOD", "jwt"),
        var("VAULT_PATH", "path"),
        var("VAULT_ROLE", "role"),
        var("VAULT_IGNORE_MISSING_SECRETS", "false"),
        var("VAULT_ENV_PASSTHROUGH", "vaultEnvPassThrough"),
        var("VAULT_JSON_LOG", "false"),
        var("VAULT_CLIENT_TIMEOUT", "10s"),
    ]
}

fn pod(spec: Value) -> Pod<'static> {
    from_json(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}))
}

/// Runs all four phases (with `fetched` and `images` standing in for the API and registry)
/// and applies the patch; returns the patched pod as JSON.
fn mutate(pod: &Pod, config: &PodConfig, fetched: &SourceData, image: Option<ImageCommand>) -> Option<Value> {
    mutate_doc(&without_nulls(serde_json::to_value(pod).unwrap()), config, fetched, image)
}

/// [`mutate`] for a pod given as the JSON the API server sends: the patch is applied to that
/// document, every field of it kept (the webhook reads only part of a pod).
fn mutate_doc(doc: &Value, config: &PodConfig, fetched: &SourceData, image: Option<ImageCommand>) -> Option<Value> {
    let pod: Pod = from_json(doc.clone());
    let targets = select(&pod, config, fetched);
    let images: HashMap<ContainerRef, ImageCommand> =
        images_to_look_up(&pod, &targets).into_iter().map(|t| (t, image.clone().expect("an image lookup was needed"))).collect();
    let patch = patch(&pod, config, &targets, &images).unwrap()?;
    let patch: json_patch::Patch = serde_json::from_slice(&patch.json).unwrap();
    let mut doc = doc.clone();
    json_patch::patch(&mut doc, &patch).expect("the patch applies");
    let _: K8sPod = serde_json::from_value(doc.clone()).expect("the result is a valid Pod");
    Some(doc)
}

/// The pod as the API server would send it: absent fields are absent, not null.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn one_container(extra: Value) -> Pod<'static> {
    let mut c = json!({"name": "MyContainer", "image": "myimage", "command": ["/bin/bash"], "env": [{"name": "myvar", "value": "vault:secrets"}]});
    c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    pod(json!({"containers": [c]}))
}

fn env_of(doc: &Value, list: &str, i: usize) -> Vec<Value> {
    doc["spec"][list][i]["env"].as_array().cloned().unwrap_or_default()
}

const SA: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Bank-Vaults' agent settings of their cases 14 and 17.
fn agent_config(init: bool) -> PodConfig {
    let mut c = bank_vaults_config();
    c.agent = Some(AgentConfig {
        configmap: "config-map-test".into(),
        init,
        once: false,
        native_sidecar: false,
        share_process_namespace: true,
        image: "hashicorp/vault:1.20.4".into(),
        pull_policy: "IfNotPresent".into(),
        config_path: "/vault/secrets".into(),
        sa_mount_path: SA.into(),
        limits: CpuMemory { cpu: "500m".into(), memory: "384Mi".into() },
        requests: CpuMemory { cpu: "200m".into(), memory: "256Mi".into() },
        env: vec![("SKIP_SETCAP".into(), "1".into())],
    });
    c
}

fn names(doc: &Value, list: &str) -> Vec<String> {
    doc["spec"][list].as_array().into_iter().flatten().map(|c| c["name"].as_str().unwrap_or_default().to_string()).collect()
}

fn mount_paths(c: &Value) -> Vec<(String, String)> {
    c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["name"].as_str().unwrap().into(), m["mountPath"].as_str().unwrap().into()))
        .collect()
}

/// Bank-Vaults' case 14 (agent-configmap annotations and env variables): the agent as a
/// templating sidecar, first among the containers; its rendered files in every app container.
#[test]
fn case14_agent_configmap_makes_a_templating_sidecar() {
    let p = one_container(json!({"volumeMounts": [{"name": "kube-api-access-x", "mountPath": SA, "readOnly": true}]}));
    let doc = mutate(&p, &agent_config(false), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "containers"), ["vault-agent", "MyContainer"]);
    assert_eq!(names(&doc, "initContainers"), ["copy-vault-env"]);
    assert_eq!(names(&doc, "volumes"), ["vault-env", "agent-secrets", "agent-configmap"]);
    assert_eq!(doc["spec"]["shareProcessNamespace"], json!(true));
    let agent = &doc["spec"]["containers"][0];
    assert_eq!(agent["args"], json!(["agent", "-config", "/vault/config/config.hcl"]));
    assert!(agent.get("command").is_none(), "the image's entrypoint runs");
    assert_eq!(
        mount_paths(agent),
        [
            ("vault-env".into(), "/vault/".into()),
            ("kube-api-access-x".into(), SA.into()),
            ("agent-secrets".into(), "/vault/secrets".into()),
            ("agent-configmap".into(), "/vault/config/config.hcl".into())
        ]
    );
    assert_eq!(env_of(&doc, "containers", 0), [var("VAULT_ADDR", "addr"), var("VAULT_SKIP_VERIFY", "false"), var("SKIP_SETCAP", "1")]);
    assert_eq!(agent["securityContext"]["capabilities"]["add"], json!(["CHOWN", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "IPC_LOCK", "SYS_PTRACE"]));
    assert_eq!(agent["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(agent["resources"], json!({"limits": {"cpu": "500m", "memory": "384Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}}));
    assert_eq!(
        doc["spec"]["volumes"][2]["configMap"],
        json!({"name": "config-map-test", "defaultMode": 420, "items": [{"key": "config.hcl", "path": "config.hcl"}]})
    );
    let app = &doc["spec"]["containers"][1];
    assert_eq!(app["command"], json!(["/vault/vault-env"]));
    assert_eq!(
        mount_paths(app),
        [("kube-api-access-x".into(), SA.into()), ("vault-env".into(), "/vault/".into()), ("agent-secrets".into(), "/vault/secrets".into())]
    );
    assert!(!env_of(&doc, "containers", 1).iter().any(|e| e["name"] == "VAULT_TOKEN_FILE"), "vault-env logs in itself");
    // A second pass (the API server's reinvocation) changes nothing.
    assert_eq!(mutate_doc(&doc, &agent_config(false), &SourceData::new(), None), None);
}

/// Bank-Vaults' case 17 (agent as init container): it logs in and renders before the app and
/// leaves its token for vault-env; no sidecar.
#[test]
fn case17_agent_init_logs_in_for_vault_env() {
    let p = pod(json!({
        "initContainers": [{"name": "MyInitContainer", "image": "myimage", "command": ["/bin/sh"]}],
        "containers": [{"name": "MyContainer", "image": "myimage", "command": ["/bin/bash"],
                        "env": [{"name": "myvar", "value": "vault:secrets"}],
                        "volumeMounts": [{"name": "kube-api-access-x", "mountPath": SA, "readOnly": true}]}]}));
    let doc = mutate(&p, &agent_config(true), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "copy-vault-env", "MyInitContainer"]);
    assert_eq!(names(&doc, "containers"), ["MyContainer"]);
    assert_eq!(names(&doc, "volumes"), ["vault-env", "agent-secrets", "vault-agent-config"]);
    // The user's init container has no references: no /vault/ (nor any other) mount, as theirs.
    assert!(doc["spec"]["initContainers"][2].get("volumeMounts").is_none(), "{}", doc["spec"]["initContainers"][2]);
    assert!(doc["spec"].get("shareProcessNamespace").is_none());
    let agent = &doc["spec"]["initContainers"][0];
    assert_eq!(agent["command"], json!(["vault", "agent", "-config=/vault/agent/config.hcl", "-exit-after-auth"]));
    assert!(mount_paths(agent).contains(&("vault-agent-config".into(), "/vault/agent/".into())));
    assert!(mount_paths(agent).contains(&("agent-secrets".into(), "/vault/secrets".into())));
    assert_eq!(doc["spec"]["volumes"][2]["configMap"]["name"], "config-map-test");
    assert!(env_of(&doc, "containers", 0).contains(&var("VAULT_TOKEN_FILE", "/vault/.vault-token")));
    assert!(mount_paths(&doc["spec"]["containers"][0]).contains(&("agent-secrets".into(), "/vault/secrets".into())));
    // The agent writes its token into /vault/; the app only reads it there, so it cannot replace
    // the token the agent left for vault-env.
    let vault_mount = |c: &Value| c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "vault-env").cloned().unwrap();
    assert_eq!(vault_mount(&doc["spec"]["containers"][0])["readOnly"], true);
    assert_eq!(vault_mount(agent).get("readOnly"), None);
    assert!(!mount_paths(&doc["spec"]["initContainers"][2]).iter().any(|m| m.0 == "agent-secrets"), "user init containers: not mounted");
}

/// The agent comes even when no container has a reference (Bank-Vaults too), and then without
/// the copy container; a pod without a service-account mount gets no empty mount (theirs does).
#[test]
fn the_agent_without_references() {
    let p = pod(json!({"containers": [{"name": "app", "image": "app", "command": ["/app"]}]}));
    let doc = mutate(&p, &agent_config(false), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "containers"), ["vault-agent", "app"]);
    assert!(doc["spec"].get("initContainers").is_none(), "{doc}");
    assert_eq!(doc["spec"]["containers"][1]["command"], json!(["/app"]));
    assert!(mount_paths(&doc["spec"]["containers"][0]).iter().all(|m| !m.1.is_empty()));
    let mut init = agent_config(true);
    init.agent.as_mut().unwrap().once = true;
    let doc = mutate(&p, &init, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent"]);
}

/// Ours, opt-in: the sidecar agent as a native sidecar, first among the init containers.
#[test]
fn the_agent_as_a_native_sidecar() {
    let mut config = agent_config(false);
    config.agent.as_mut().unwrap().native_sidecar = true;
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "copy-vault-env"]);
    assert_eq!(names(&doc, "containers"), ["MyContainer"]);
    assert_eq!(doc["spec"]["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(doc["spec"]["initContainers"][0]["args"], json!(["agent", "-config", "/vault/config/config.hcl"]));
}

/// Bank-Vaults' case A (`vault-agent: "true"` alone): an init agent with the generated
/// configuration logs in and vault-env uses its token; nothing without references; with the
/// pod's own token (token-auth-mount) that token wins and no agent comes.
#[test]
fn case_a_the_login_agent_for_vault_env() {
    let mut config = bank_vaults_config();
    config.login_agent = Some(login_agent(true));
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "copy-vault-env"]);
    assert_eq!(names(&doc, "volumes"), ["vault-env", "vault-agent-config", "vault-agent-token"]);
    // The login agent's token has a volume of its own: written by the agent, read-only in the app.
    assert!(env_of(&doc, "containers", 0).contains(&var("VAULT_TOKEN_FILE", "/vault-agent-token/.vault-token")));
    let app_mounts = &doc["spec"]["containers"][0]["volumeMounts"];
    assert!(app_mounts.as_array().unwrap().contains(&json!({"name": "vault-agent-token", "mountPath": "/vault-agent-token/", "readOnly": true})));
    assert!(mount_paths(&doc["spec"]["initContainers"][0]).contains(&("vault-agent-token".into(), "/vault-agent-token/".into())));
    let plain = pod(json!({"containers": [{"name": "app", "image": "app", "command": ["/app"]}]}));
    assert_eq!(mutate(&plain, &config, &SourceData::new(), None), None);
    config.token_auth_mount = Some(("my-token".into(), "token".into()));
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["copy-vault-env"]);
    assert!(env_of(&doc, "containers", 0).contains(&var("VAULT_TOKEN_FILE", "/vault-token/token")));
}

/// Bank-Vaults' consul-template settings of their cases 12, 13, 15 and 16.
fn ct_config(once: bool, in_init_containers: bool) -> PodConfig {
    let mut c = bank_vaults_config();
    c.login_agent = Some(login_agent(false));
    c.consul_template = Some(CtConfig {
        configmap: "config-map-test".into(),
        image: "hashicorp/consul-template:0.41.1".into(),
        pull_policy: "IfNotPresent".into(),
        once,
        inject_in_init_containers: once && in_init_containers,
        native_sidecar: false,
        share_process_namespace: true,
        cpu: "50m".into(),
        memory: "128Mi".into(),
        config_path: "/vault/secrets".into(),
    });
    c
}

fn login_agent(for_vault_env: bool) -> LoginAgent {
    let image = AgentImage { image: "hashicorp/vault:1.20.4".into(), pull_policy: "IfNotPresent".into(), sa_mount_path: SA.into() };
    LoginAgent { image, for_vault_env }
}

/// The pod of cases 12, 13, 15 and 16: no references, a service-account mount, and (15, 16)
/// an init container of the user's.
fn ct_pod(with_init: bool) -> Pod<'static> {
    let app = json!({"name": "MyContainer", "image": "myimage", "command": ["/bin/bash"], "volumeMounts": [{"name": "kube-api-access-x", "mountPath": SA}]});
    let mut spec = json!({"containers": [app]});
    if with_init {
        spec["initContainers"] = json!([{"name": "MyInitContainer", "image": "myimage", "command": ["/bin/bash"]}]);
    }
    pod(spec)
}

/// Bank-Vaults' case 12 (ct-configmap): an init agent logs in (its configuration travels in
/// its env, no ConfigMap is created) and consul-template runs as the first container, with
/// the token volume as its home and the rendered files mounted in the app.
#[test]
fn case12_consul_template_sidecar_with_a_login_agent() {
    let doc = mutate(&ct_pod(false), &ct_config(false, false), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent"]);
    assert_eq!(names(&doc, "containers"), ["consul-template", "MyContainer"]);
    assert_eq!(names(&doc, "volumes"), ["vault-env", "vault-agent-config", "vault-agent-token", "ct-secrets", "ct-configmap"]);
    assert_eq!(doc["spec"]["volumes"][1], json!({"name": "vault-agent-config", "emptyDir": {"medium": "Memory"}}));
    assert_eq!(doc["spec"]["volumes"][2], json!({"name": "vault-agent-token", "emptyDir": {"medium": "Memory"}}));
    assert_eq!(
        doc["spec"]["volumes"][4],
        json!({"name": "ct-configmap", "configMap": {"name": "config-map-test", "defaultMode": 420, "items": [{"key": "config.hcl", "path": "config.hcl"}]}})
    );
    assert_eq!(doc["spec"]["shareProcessNamespace"], true);

    let login = &doc["spec"]["initContainers"][0];
    assert_eq!(login["command"][0], "/bin/sh");
    assert!(login["command"][2].as_str().unwrap().ends_with("exec vault agent -config=/vault/agent/config.json -exit-after-auth"), "{login}");
    let config = login["env"].as_array().unwrap().iter().find(|e| e["name"] == "AGENT_CONFIG").expect("the configuration");
    let config: Value = serde_json::from_str(config["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        config,
        json!({"auto_auth": {
            "method": {"type": "kubernetes", "mount_path": "auth/path", "config": {"role": "role", "token_path": format!("{SA}/token")}},
            "sink": [{"type": "file", "config": {"path": "/vault-agent-token/.vault-token"}}]}})
    );
    assert_eq!(
        mount_paths(login),
        [
            ("vault-env".into(), "/vault/".into()),
            ("kube-api-access-x".into(), SA.into()),
            ("vault-agent-config".into(), "/vault/agent/".into()),
            ("vault-agent-token".into(), "/vault-agent-token/".into())
        ]
    );
    assert_eq!(login["resources"]["limits"], json!({"cpu": "500m", "memory": "256Mi"}), "the copy container's, as theirs");

    let ct = &doc["spec"]["containers"][0];
    assert_eq!(ct["args"], json!(["-config", "/vault/ct-config/config.hcl"]));
    assert!(ct.get("command").is_none(), "the image's entrypoint runs");
    assert_eq!(
        mount_paths(ct),
        [
            ("vault-env".into(), "/vault/".into()),
            ("ct-secrets".into(), "/vault/secrets".into()),
            ("vault-agent-token".into(), "/home/consul-template".into()),
            ("ct-configmap".into(), "/vault/ct-config/config.hcl".into())
        ]
    );
    assert!(ct["env"].as_array().unwrap().contains(&var("HOME", "/home/consul-template")));
    assert_eq!(ct["securityContext"]["capabilities"], json!({"add": ["SYS_PTRACE"], "drop": ["ALL"]}));
    assert_eq!(ct["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(ct["resources"], json!({"limits": {"cpu": "50m", "memory": "128Mi"}}));
    assert!(mount_paths(&doc["spec"]["containers"][1]).contains(&("ct-secrets".into(), "/vault/secrets".into())));
    // Idempotent: a second pass adds nothing.
    assert_eq!(mutate_doc(&doc, &ct_config(false, false), &SourceData::new(), None), None);
}

/// Bank-Vaults' case 13 (ct-once): consul-template renders once, as an init container after
/// the login; the app container mounts the files; no shared process namespace (ours: nothing
/// runs beside the app to signal it).
#[test]
fn case13_consul_template_once() {
    let doc = mutate(&ct_pod(false), &ct_config(true, false), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "consul-template"]);
    assert_eq!(names(&doc, "containers"), ["MyContainer"]);
    assert_eq!(doc["spec"]["initContainers"][1]["args"], json!(["-config", "/vault/ct-config/config.hcl", "-once"]));
    assert_eq!(doc["spec"]["initContainers"][1]["securityContext"]["capabilities"], json!({"drop": ["ALL"]}));
    assert!(doc["spec"].get("shareProcessNamespace").is_none());
    assert!(mount_paths(&doc["spec"]["containers"][0]).contains(&("ct-secrets".into(), "/vault/secrets".into())));
}

/// Bank-Vaults' cases 15 and 16: the user's init containers mount the rendered files only with
/// both vault-ct-once and vault-ct-inject-in-initcontainers; with references, copy-vault-env
/// comes between the login and consul-template.
#[test]
fn case15_16_inject_in_init_containers() {
    let doc = mutate(&ct_pod(true), &ct_config(true, true), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "consul-template", "MyInitContainer"]);
    assert!(mount_paths(&doc["spec"]["initContainers"][2]).contains(&("ct-secrets".into(), "/vault/secrets".into())));
    let doc = mutate(&ct_pod(true), &ct_config(false, true), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "MyInitContainer"]);
    assert_eq!(names(&doc, "containers"), ["consul-template", "MyContainer"]);
    assert!(!mount_paths(&doc["spec"]["initContainers"][1]).iter().any(|m| m.0 == "ct-secrets"));

    let doc = mutate(&one_container(json!({})), &ct_config(true, false), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "copy-vault-env", "consul-template"]);
    assert_eq!(doc["spec"]["containers"][0]["command"], json!(["/vault/vault-env"]));
    assert!(!env_of(&doc, "containers", 0).iter().any(|e| e["name"] == "VAULT_TOKEN_FILE"), "vault-env logs in itself");
}

/// With `vault-agent: "true"` vault-env uses the login agent's token too (Bank-Vaults); with an
/// init agent of the pod's own, that agent's token serves both, and no second agent comes;
/// beside a sidecar agent the login agent has a name of its own; with `token-auth-mount`
/// consul-template reads that token (ours: Bank-Vaults copies it); native consul-template.
#[test]
fn consul_template_with_the_agents() {
    let mut config = ct_config(false, false);
    config.login_agent = Some(login_agent(true));
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert!(env_of(&doc, "containers", 1).contains(&var("VAULT_TOKEN_FILE", "/vault-agent-token/.vault-token")));

    let mut config = agent_config(true);
    config.consul_template = ct_config(false, false).consul_template;
    config.login_agent = None;
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "copy-vault-env"]);
    assert_eq!(doc["spec"]["initContainers"][0]["command"][1], "agent", "the pod's own agent");
    assert_eq!(names(&doc, "containers"), ["consul-template", "MyContainer"]);
    assert_eq!(names(&doc, "volumes"), ["vault-env", "agent-secrets", "vault-agent-config", "ct-secrets", "ct-configmap"]);
    let home = json!({"name": "vault-env", "mountPath": "/home/consul-template", "readOnly": true});
    assert!(doc["spec"]["containers"][0]["volumeMounts"].as_array().unwrap().contains(&home), "the pod's agent sinks in /vault/");

    let mut config = agent_config(false);
    config.consul_template = ct_config(false, false).consul_template;
    config.login_agent = Some(login_agent(false));
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent-login", "copy-vault-env"]);
    assert_eq!(names(&doc, "containers"), ["vault-agent", "consul-template", "MyContainer"]);

    let mut config = ct_config(false, false);
    config.token_auth_mount = Some(("my-token".into(), "token".into()));
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["copy-vault-env"], "no login with the pod's own token");
    let ct = &doc["spec"]["containers"][0];
    assert_eq!(ct["args"], json!(["-config", "/vault/ct-config/config.hcl", "-vault-agent-token-file=/vault-token/token"]));
    assert!(mount_paths(ct).contains(&("my-token".into(), "/vault-token/".into())));

    let mut config = ct_config(false, false);
    config.consul_template.as_mut().unwrap().native_sidecar = true;
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["vault-agent", "copy-vault-env", "consul-template"]);
    assert_eq!(doc["spec"]["initContainers"][2]["restartPolicy"], "Always");
    assert_eq!(names(&doc, "containers"), ["MyContainer"]);
}

#[test]
fn case1_command_without_args() {
    let doc = mutate(&one_container(json!({})), &bank_vaults_config(), &SourceData::new(), None).unwrap();
    let c = &doc["spec"]["containers"][0];
    assert_eq!(c["command"], json!(["/vault/vault-env"]));
    assert_eq!(c["args"], json!(["/bin/bash"]));
    let mut expected = vec![var("myvar", "vault:secrets")];
    expected.extend(std9());
    assert_eq!(env_of(&doc, "containers", 0), expected);
    // Read-only in the app (ours: it must not replace the binary other containers run); the
    // copy container writes it.
    assert_eq!(c["volumeMounts"], json!([{"name": "vault-env", "mountPath": "/vault/", "readOnly": true}]));
    assert_eq!(doc["spec"]["volumes"], json!([{"name": "vault-env", "emptyDir": {"medium": "Memory"}}]));
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(init["volumeMounts"], json!([{"name": "vault-env", "mountPath": "/vault/"}]));
    assert_eq!(init["name"], "copy-vault-env");
    assert_eq!(init["command"], json!(["/usr/local/bin/vault-env", "--copy-to", "/vault/"]));
    assert_eq!(init["securityContext"]["runAsUser"], 1000);
    assert_eq!(init["securityContext"]["runAsGroup"], 1000);
    assert_eq!(init["securityContext"]["runAsNonRoot"], true);
    assert_eq!(init["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(init["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(init["resources"]["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
}

#[test]
fn case2_write_syntax_and_case10_inline() {
    for value in [">>vault:secrets", "scheme://${vault:secret/data/account#username}:${vault:secret/data/account#password}@127.0.0.1:8080"] {
        let p = pod(json!({"containers": [{"name": "c", "image": "i", "command": ["/bin/bash"], "env": [{"name": "myvar", "value": value}]}]}));
        let doc = mutate(&p, &bank_vaults_config(), &SourceData::new(), None).expect(value);
        assert_eq!(env_of(&doc, "containers", 0)[0], var("myvar", value), "values are never rewritten");
        assert_eq!(doc["spec"]["containers"][0]["args"], json!(["/bin/bash"]));
    }
}

#[test]
fn case3_and_7_image_entrypoint_and_cmd() {
    let p = pod(json!({"containers": [{"name": "c", "image": "i", "command": [], "env": [{"name": "myvar", "value": ">>vault:secrets"}]}]}));
    let entry = ImageCommand { entrypoint: vec!["myEntryPoint".into()], cmd: vec![] };
    let doc = mutate(&p, &bank_vaults_config(), &SourceData::new(), Some(entry)).unwrap();
    assert_eq!(doc["spec"]["containers"][0]["args"], json!(["myEntryPoint"]));
    let cmd = ImageCommand { entrypoint: vec![], cmd: vec!["myCmd".into()] };
    let doc = mutate(&p, &bank_vaults_config(), &SourceData::new(), Some(cmd)).unwrap();
    assert_eq!(doc["spec"]["containers"][0]["args"], json!(["myCmd"]));
    // Entrypoint + Cmd, and the container's args replace Cmd (Docker's rule).
    let both = ImageCommand { entrypoint: vec!["/bin/app".into()], cmd: vec!["--flag".into()] };
    let doc = mutate(&p, &bank_vaults_config(), &SourceData::new(), Some(both.clone())).unwrap();
    assert_eq!(doc["spec"]["containers"][0]["args"], json!(["/bin/app", "--flag"]));
    let with_args = pod(json!({"containers": [{"name": "c", "image": "i", "args": ["--other"], "env": [{"name": "v", "value": "vault:a#b"}]}]}));
    let doc = mutate(&with_args, &bank_vaults_config(), &SourceData::new(), Some(both)).unwrap();
    assert_eq!(doc["spec"]["containers"][0]["args"], json!(["/bin/app", "--other"]));
}

#[test]
fn cases4_to_6_probes() {
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let p = one_container(json!({probe: {"exec": {"command": ["/bin/bash"]}}}));
        let mut config = bank_vaults_config();
        config.mutate_probes = true;
        let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
        assert_eq!(doc["spec"]["containers"][0][probe]["exec"]["command"], json!(["/vault/vault-env", "/bin/bash"]), "{probe}");
        config.mutate_probes = false;
        let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
        assert_eq!(doc["spec"]["containers"][0][probe]["exec"]["command"], json!(["/bin/bash"]), "{probe}");
    }
}

#[test]
fn case8_no_reference_no_mutation() {
    let p = pod(json!({"containers": [{"name": "c", "image": "i", "command": ["/bin/bash"], "env": [{"name": "x", "value": "vault"}]}]}));
    assert_eq!(mutate(&p, &bank_vaults_config(), &SourceData::new(), None), None);
}

#[test]
fn case9_env_from_path_mutates_every_container() {
    let p = pod(json!({
        "initContainers": [{"name": "i", "image": "i", "command": ["init"]}],
        "containers": [{"name": "a", "image": "a", "command": ["/bin/bash"]}, {"name": "b", "image": "b", "command": ["b"]}],
    }));
    let mut config = bank_vaults_config();
    config.from_path = "secrets/application".into();
    let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
    let mut expected = std9();
    expected.push(var("VAULT_ENV_FROM_PATH", "secrets/application"));
    for (list, i) in [("containers", 0), ("containers", 1), ("initContainers", 1)] {
        assert_eq!(env_of(&doc, list, i), expected, "{list}[{i}]");
        assert_eq!(doc["spec"][list][i]["command"], json!(["/vault/vault-env"]));
    }
    assert_eq!(doc["spec"]["initContainers"][0]["name"], "copy-vault-env", "copy runs first");
    assert_eq!(doc["spec"]["initContainers"][1]["args"], json!(["init"]));
}

#[test]
fn case11_existing_log_level_is_kept() {
    let p = pod(json!({"containers": [{"name": "c", "image": "i", "command": ["/bin/bash"],
        "env": [{"name": "myvar", "value": "vault:secrets"}, {"name": "VAULT_LOG_LEVEL", "value": "info"}]}]}));
    let mut config = bank_vaults_config();
    config.log_level = "debug".into();
    let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
    let env = env_of(&doc, "containers", 0);
    let levels: Vec<&Value> = env.iter().filter(|e| e["name"] == "VAULT_LOG_LEVEL").map(|e| &e["value"]).collect();
    assert_eq!(levels, [&json!("info")]);
    // Without one, the configured level is added.
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert!(env_of(&doc, "containers", 0).contains(&var("VAULT_LOG_LEVEL", "debug")));
}

#[test]
fn second_pass_is_a_no_op() {
    let p = one_container(json!({}));
    let doc = mutate(&p, &bank_vaults_config(), &SourceData::new(), None).unwrap();
    let mutated: Pod = from_json(doc.clone());
    assert!(already_mutated(&mutated));
    assert_eq!(mutate_doc(&doc, &bank_vaults_config(), &SourceData::new(), None), None);
    // With VAULT_ENV_FROM_PATH every container is a target: still nothing twice.
    let mut config = bank_vaults_config();
    config.from_path = "secret/data/app".into();
    let mutated = mutate(&p, &config, &SourceData::new(), None).unwrap();
    assert_eq!(mutate_doc(&mutated, &config, &SourceData::new(), None), None);
}

/// A pod whose own volume is named `vault-env` (and no copy container): its containers were
/// wrapped with no binary to run (a crash-looping pod). Now: a denial naming the volume; and
/// after a pass that wrapped nothing (consul-template only), a later container with references
/// gets the copy container it needs.
#[test]
fn a_vault_env_volume_without_the_copy_container() {
    let mut p = one_container(json!({}));
    p.spec.as_mut().unwrap().volumes = Some(vec![from_json(json!({"name": "vault-env", "configMap": {"name": "mine"}}))]);
    let config = bank_vaults_config();
    let targets = select(&p, &config, &SourceData::new());
    let err = patch(&p, &config, &targets, &HashMap::new()).unwrap_err();
    assert!(matches!(err, PatchError::VolumeTaken("vault-env")), "{err}");
    assert!(err.to_string().contains("a volume named \"vault-env\" of its own"), "{err}");

    let ct_only = mutate(&ct_pod(false), &ct_config(false, false), &SourceData::new(), None).unwrap();
    let mut again: Value = ct_only.clone();
    again["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "late", "image": "late", "command": ["/late"], "env": [{"name": "P", "value": "vault:secret/data/app#p"}]}));
    let doc = mutate_doc(&again, &ct_config(false, false), &SourceData::new(), None).unwrap();
    assert_eq!(names(&doc, "initContainers"), ["copy-vault-env", "vault-agent"]);
    assert_eq!(doc["spec"]["containers"][2]["command"], json!(["/vault/vault-env"]));
}

/// Reinvocation: another webhook added a container with a reference after our first pass.
#[test]
fn a_container_added_after_the_first_pass_is_wrapped_alone() {
    let p = one_container(json!({}));
    let mut doc = mutate(&p, &bank_vaults_config(), &SourceData::new(), None).unwrap();
    let sidecar = json!({"name": "sidecar", "image": "s", "command": ["/sidecar"], "env": [{"name": "T", "value": "vault:secret/data/t#t"}]});
    doc["spec"]["containers"].as_array_mut().unwrap().push(sidecar);
    let after = mutate_doc(&doc, &bank_vaults_config(), &SourceData::new(), None).expect("the sidecar is wrapped");
    assert_eq!(after["spec"]["containers"][0], doc["spec"]["containers"][0], "the first container is left as it was");
    assert_eq!(after["spec"]["containers"][1]["command"], json!([BINARY]));
    assert_eq!(after["spec"]["containers"][1]["args"], json!(["/sidecar"]));
    assert_eq!(after["spec"]["initContainers"], doc["spec"]["initContainers"], "one copy container");
    assert_eq!(after["spec"]["volumes"], doc["spec"]["volumes"], "one vault-env volume");
}

#[test]
fn value_from_secrets_and_config_maps() {
    let p = pod(json!({"containers": [
        {"name": "by-key", "image": "i", "command": ["a"], "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]},
        {"name": "plain-key", "image": "i", "command": ["b"], "env": [{"name": "U", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}}]},
        {"name": "from-cm", "image": "i", "command": ["c"], "envFrom": [{"configMapRef": {"name": "settings"}}]},
        {"name": "optional", "image": "i", "command": ["d"], "envFrom": [{"secretRef": {"name": "db", "optional": true}}]},
        {"name": "missing", "image": "i", "command": ["e"], "env": [{"name": "M", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]},
        {"name": "optional-gone", "image": "i", "command": ["f"], "envFrom": [{"configMapRef": {"name": "gone", "optional": true}}]},
    ]}));
    let config = bank_vaults_config();
    assert_eq!(
        sources_to_fetch(&p, &config),
        vec![(DataSource::Secret, "db".to_string()), (DataSource::ConfigMap, "gone".into()), (DataSource::ConfigMap, "settings".into())]
    );
    let mut fetched = SourceData::new();
    fetched.insert(
        (DataSource::Secret, "db".into()),
        Some([("password".into(), "vault:secret/data/db#pw".into()), ("user".into(), "app".into())].into()),
    );
    fetched.insert((DataSource::ConfigMap, "settings".into()), Some([("URL".into(), "x ${vault:secret/data/u#url} y".into())].into()));
    fetched.insert((DataSource::ConfigMap, "gone".into()), None);
    let targets = select(&p, &config, &fetched);
    // `optional: true` sources are read and count when they hold references, as in
    // Bank-Vaults (the app got literal vault: values before); a missing one holds nothing.
    assert_eq!(targets, vec![ContainerRef { init: false, index: 0 }, ContainerRef { init: false, index: 2 }, ContainerRef { init: false, index: 3 }]);
    mutate(&p, &config, &fetched, None).unwrap();
}

/// Ours (Bank-Vaults' PR #842 and issue #403): only the named containers are wrapped (an
/// Istio or Argo sidecar with references of its own is left alone); the volume on disk.
#[test]
fn chosen_containers_and_the_volumes_medium() {
    let mut config = bank_vaults_config();
    config.containers = vec!["app".into()];
    config.volume_medium = "Disk".into();
    let p = pod(json!({"containers": [
        {"name": "istio-proxy", "image": "i", "command": ["/proxy"], "env": [{"name": "A", "value": "vault:secret/data/a#a"}]},
        {"name": "app", "image": "a", "command": ["/app"], "env": [{"name": "B", "value": "vault:secret/data/b#b"}]}]}));
    let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
    assert_eq!(doc["spec"]["containers"][0]["command"], json!(["/proxy"]));
    assert_eq!(doc["spec"]["containers"][1]["command"], json!(["/vault/vault-env"]));
    assert_eq!(doc["spec"]["volumes"][0], json!({"name": "vault-env", "emptyDir": {}}));
}

#[test]
fn the_successors_marker_is_seen() {
    let mut p = one_container(json!({"command": ["/vault/secret-init"], "args": ["/bin/bash"]}));
    assert!(mutated_by_successor(&p));
    p = one_container(json!({}));
    assert!(!mutated_by_successor(&p));
    p.spec.as_mut().unwrap().volumes = Some(vec![from_json(json!({"name": "secret-init", "emptyDir": {"medium": "Memory"}}))]);
    assert!(mutated_by_successor(&p));
}

#[test]
fn skip_annotation_leaves_the_pod_alone() {
    let mut config = bank_vaults_config();
    config.skip = true;
    assert_eq!(mutate(&one_container(json!({})), &config, &SourceData::new(), None), None);
}

#[test]
fn settings_become_variables_in_order() {
    let mut config = bank_vaults_config();
    config.log_level = "warn".into();
    config.vault.transit_key_id = "key".into();
    config.vault.transit_path = "transit2".into();
    config.vault.transit_batch_size = 25;
    config.vault.namespace = "team-a".into();
    config.vault.tls_secret = "vault-ca".into();
    config.token_auth_mount = Some(("token-vol".into(), "token".into()));
    config.daemon = Some(true);
    config.delay = Some(Duration::from_secs(5));
    config.from_path = "secret/data/app".into();
    let p = pod(json!({
        "volumes": [{"name": "token-vol", "emptyDir": {}}],
        "initContainers": [{"name": "setup", "image": "i", "command": ["x"]}],
        "containers": [{"name": "c", "image": "i", "command": ["app"], "volumeMounts": [{"name": "token-vol", "mountPath": "/t"}]}],
    }));
    let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
    let names: Vec<String> = env_of(&doc, "containers", 0).iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        names[9..],
        [
            "VAULT_LOG_LEVEL",
            "VAULT_TRANSIT_KEY_ID",
            "VAULT_TRANSIT_PATH",
            "VAULT_TRANSIT_BATCH_SIZE",
            "VAULT_NAMESPACE",
            "VAULT_CACERT",
            "VAULT_TOKEN_FILE",
            "VAULT_ENV_DAEMON",
            "VAULT_ENV_DELAY",
            "VAULT_ENV_FROM_PATH",
        ]
    );
    let env = env_of(&doc, "containers", 0);
    assert!(env.contains(&var("VAULT_ENV_DAEMON", "true")));
    assert!(env.contains(&var("VAULT_CACERT", "/vault/tls/ca.crt")));
    assert!(env.contains(&var("VAULT_TOKEN_FILE", "/vault-token/token")));
    assert!(env.contains(&var("VAULT_ENV_DELAY", "5s")));
    let mounts = &doc["spec"]["containers"][0]["volumeMounts"];
    assert_eq!(mounts.as_array().unwrap().len(), 4, "{mounts}");
    let volumes: Vec<&str> = doc["spec"]["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(volumes, ["token-vol", "vault-env", "vault-tls"]);
    let names: Vec<&str> = doc["spec"]["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["copy-vault-env", "setup"]);
}

#[test]
fn tls_volume_name_moves_aside_for_vaults_own() {
    let mut config = bank_vaults_config();
    config.vault.tls_secret = "ca".into();
    let p = pod(json!({"volumes": [{"name": "vault-tls", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "i", "command": ["a"], "env": [{"name": "v", "value": "vault:a#b"}]}]}));
    let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
    assert!(env_of(&doc, "containers", 0).contains(&var("VAULT_CACERT", "/vault-env/tls/ca.crt")));
    assert_eq!(doc["spec"]["volumes"][2]["name"], "vault-env-tls");
}

#[test]
fn daemon_false_is_explicit_exec_mode() {
    let mut config = bank_vaults_config();
    config.daemon = Some(false);
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert!(env_of(&doc, "containers", 0).contains(&var("VAULT_ENV_DAEMON", "false")));
    config.daemon = None;
    let doc = mutate(&one_container(json!({})), &config, &SourceData::new(), None).unwrap();
    assert!(!env_of(&doc, "containers", 0).iter().any(|e| e["name"] == "VAULT_ENV_DAEMON"));
}

#[test]
fn pod_run_as_user_is_copied_and_annotation_wins() {
    let mut config = bank_vaults_config();
    config.run_as_user = 0;
    config.run_as_group = 0;
    config.run_as_non_root = false;
    let p = pod(json!({"securityContext": {"runAsUser": 4242},
        "containers": [{"name": "c", "image": "i", "command": ["a"], "env": [{"name": "v", "value": "vault:a#b"}]}]}));
    let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
    let sc = &doc["spec"]["initContainers"][0]["securityContext"];
    assert_eq!(sc["runAsUser"], 4242);
    assert!(sc.get("runAsNonRoot").is_none() && sc.get("runAsGroup").is_none());
    config.run_as_user = 1000;
    let doc = mutate(&p, &config, &SourceData::new(), None).unwrap();
    assert_eq!(doc["spec"]["initContainers"][0]["securityContext"]["runAsUser"], 1000);
}

/// Found by the admission fuzz target: a pod without `spec` and an agent annotation got a patch
/// that adds to `/spec/volumes`, which does not apply. (The API server always sends a spec; a
/// pod without one has nothing to run through vault-env either.)
#[test]
fn a_pod_without_a_spec_gets_no_patch() {
    let doc = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let p: Pod = from_json(doc.clone());
    for config in [agent_config(false), agent_config(true), ct_config(false, false), bank_vaults_config()] {
        assert!(matches!(patch(&p, &config, &[], &HashMap::new()), Ok(None)));
        assert_eq!(mutate_doc(&doc, &config, &SourceData::new(), None), None);
    }
}

/// Found by the fuzz target too: a sidecar (consul-template, vault-agent) for a pod whose
/// `containers` is absent or null was added at `/spec/containers/0`, which does not apply.
#[test]
fn sidecars_for_a_pod_without_containers_add_the_list() {
    for containers in [None, Some(json!(null)), Some(json!([]))] {
        let mut spec = json!({"volumes": []});
        if let Some(c) = containers.clone() {
            spec["containers"] = c;
        }
        let doc = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec});
        for config in [agent_config(false), ct_config(false, false)] {
            let patched = mutate_doc(&doc, &config, &SourceData::new(), None).expect("a sidecar is added");
            assert_eq!(patched["spec"]["containers"].as_array().map(Vec::len), Some(1), "{containers:?}: {patched}");
        }
    }
}

/// vault-env's variables join a container's `env` in one operation that writes the list back as
/// the review carried it: entries with fields this webhook does not read (`fieldRef`, a field of a
/// newer Kubernetes) come back unchanged, and each container's `env` is one operation, not one per
/// variable. A container without `env` gets the list whole, as before.
#[test]
fn variables_join_the_env_list_in_one_operation_that_keeps_every_field() {
    let kept = json!([{"name": "myvar", "value": "vault:secrets"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NEW", "value": "x", "futureField": {"a": [1, 2]}}]);
    let doc = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "i", "command": ["/app"], "env": kept},
        {"name": "b", "image": "i", "command": ["/app"], "envFrom": [{"secretRef": {"name": "s"}}]}]}});
    let mut fetched = SourceData::new();
    fetched.insert((DataSource::Secret, "s".into()), Some(BTreeMap::from([("K".into(), "vault:secret/data/k#v".into())])));
    let config = bank_vaults_config();
    let pod: Pod = from_json(doc.clone());
    let targets = select(&pod, &config, &fetched);
    assert_eq!(targets.len(), 2);
    let written = patch(&pod, &config, &targets, &HashMap::new()).unwrap().unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&written.json).unwrap();
    let env_ops: Vec<&str> = ops.iter().filter_map(|op| op["path"].as_str()).filter(|p| p.contains("/env")).collect();
    assert_eq!(env_ops, ["/spec/containers/0/env", "/spec/containers/1/env"]);
    let mut patched = doc.clone();
    json_patch::patch(&mut patched, &serde_json::from_value::<json_patch::Patch>(Value::Array(ops)).unwrap()).unwrap();
    let mut want = kept.as_array().unwrap().clone();
    want.extend(std9());
    assert_eq!(env_of(&patched, "containers", 0), want);
    assert_eq!(env_of(&patched, "containers", 1), std9());
}
