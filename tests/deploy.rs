//! deploy/vault-secrets-webhook.yaml (rendered from the Helm chart) read into k8s-openapi types:
//! every document is a valid object, and the safety properties of the chart hold.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::Value;
use std::path::Path;

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/vault-secrets-webhook.yaml")).unwrap();
    serde_saphyr::from_multiple(&text).expect("valid YAML")
}

fn find<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> T {
    let doc = docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{kind} is not valid: {e}"))
}

#[test]
fn rendered_manifests_are_valid_and_safe() {
    let docs = documents();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "MutatingWebhookConfiguration",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "PodDisruptionBudget",
        "Certificate",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let config: MutatingWebhookConfiguration = find(&docs, "MutatingWebhookConfiguration");
    let hooks = config.webhooks.unwrap();
    let pods = hooks.iter().find(|w| w.name.starts_with("pods.")).unwrap();
    assert_eq!(pods.side_effects, "NoneOnDryRun");
    assert_eq!(pods.client_config.service.as_ref().unwrap().path.as_deref(), Some("/pods"));
    let rule = &pods.rules.as_ref().unwrap()[0];
    assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_string()][..]));
    let excluded: Vec<String> = pods
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .iter()
        .flatten()
        .filter(|e| e.operator == "NotIn")
        .flat_map(|e| e.values.clone().unwrap_or_default())
        .collect();
    assert!(excluded.contains(&"kube-system".to_string()) && excluded.contains(&"vault-infra".to_string()), "{excluded:?}");
    let skip = pods.object_selector.as_ref().unwrap().match_expressions.as_ref().unwrap();
    assert!(skip.iter().any(|e| e.key == "security.banzaicloud.io/mutate" && e.values.as_deref() == Some(&["skip".to_string()][..])));

    // Secrets are resolved on CREATE and UPDATE (secretsMutation defaults to true, as Bank-Vaults').
    let secrets = hooks.iter().find(|w| w.name.starts_with("secrets.")).expect("a secrets webhook");
    assert_eq!(secrets.client_config.service.as_ref().unwrap().path.as_deref(), Some("/secrets"));
    let rule = &secrets.rules.as_ref().unwrap()[0];
    assert_eq!(
        (rule.operations.clone().unwrap(), rule.resources.clone().unwrap()),
        (vec!["CREATE".to_string(), "UPDATE".into()], vec!["secrets".to_string()])
    );
    assert_eq!(secrets.side_effects, "NoneOnDryRun");
    let role: ClusterRole = find(&docs, "ClusterRole");
    let rules = role.rules.unwrap();
    assert!(rules.iter().all(|r| r.verbs.iter().all(|v| v == "get")), "read-only: no ServiceAccount tokens unless vaultServiceAccount is enabled");

    let deployment: Deployment = find(&docs, "Deployment");
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let template = spec.template;
    assert_eq!(template.metadata.unwrap().labels.unwrap()["security.banzaicloud.io/mutate"], "skip", "the webhook never mutates itself");
    let container = &template.spec.unwrap().containers[0];
    let sc = container.security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_non_root, sc.allow_privilege_escalation, sc.read_only_root_filesystem), (Some(true), Some(false), Some(true)));
    let env: Vec<&str> = container.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains(&"TLS_CERT_FILE") && env.contains(&"TLS_PRIVATE_KEY_FILE"), "HTTPS only");
    let probe = container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!((probe.scheme.as_deref(), probe.path.as_deref()), (Some("HTTPS"), Some("/healthz")));
}
