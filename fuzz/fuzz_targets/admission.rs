//! Any bytes as an AdmissionReview through the webhook's whole admission path, with the network
//! replaced by answers made up here (every Secret/ConfigMap key holds a reference, every image has
//! an ENTRYPOINT, every Vault reference resolves to "v"): the review parser, the annotations, the
//! pod mutation (both passes, as the API server's reinvocation does), and the Secret, ConfigMap
//! and custom-object resolution. Nothing may panic, and every patch must apply to the object it
//! was made for and give a valid object back.
#![no_main]

use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::core::DynamicObject;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use vault_env::SecretString;
use vault_env_webhook::annotations::{ObjectConfig, ObjectDefaults, ObjectInfo, PodConfig, PodDefaults};
use vault_env_webhook::http::review::parse;
use vault_env_webhook::model::Pod;
use vault_env_webhook::mutate::object::{self, Kind};
use vault_env_webhook::mutate::pod::{self, ImageCommand, SourceData};

fn apply(doc: &Value, patch: &[u8]) -> Value {
    let patch: json_patch::Patch = serde_json::from_slice(patch).expect("the patch is JSON Patch");
    let mut doc = doc.clone();
    json_patch::patch(&mut doc, &patch).expect("the patch applies to its object");
    doc
}

/// One pass of the pod mutation on a pod as the API server sends it (JSON; the webhook reads the
/// part of it that it needs; a `null` string, which Go never writes, is a 400 there); the mutated
/// pod, if anything changed.
fn mutate_pod(doc: &Value, namespace: &str) -> Option<Value> {
    let text = doc.to_string();
    let pod: &Pod = &serde_json::from_str(&text).ok()?;
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let service_account = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("");
    let info = ObjectInfo { name: pod.metadata.name.as_deref().unwrap_or(""), namespace, service_account };
    let config = PodConfig::from_annotations(annotations, labels, &info, &PodDefaults::default()).ok()?;
    let fetched: SourceData = pod::sources_to_fetch(pod, &config)
        .into_iter()
        .map(|source| (source, Some(BTreeMap::from([("K".to_string(), "vault:secret/data/x#k".to_string())]))))
        .collect();
    let targets = pod::select(pod, &config, &fetched);
    let images: HashMap<_, _> = pod::images_to_look_up(pod, &targets)
        .into_iter()
        .map(|t| (t, ImageCommand { entrypoint: vec!["/entrypoint".into()], cmd: vec!["serve".into()] }))
        .collect();
    let patch = pod::patch(pod, &config, &targets, &images).ok()??;
    let patched = apply(doc, &patch.json);
    let _: K8sPod = serde_json::from_value(patched.clone()).expect("the patched Pod is a Pod");
    // Whatever is added to a container's `env` comes after its own entries, kept as they were.
    // (The containers the webhook adds are put first: the pod's own ones move down by as many.)
    for list in ["containers", "initContainers"] {
        let own = doc["spec"][list].as_array().map_or(&[][..], Vec::as_slice);
        let now = patched["spec"][list].as_array().map_or(&[][..], Vec::as_slice);
        let added = now.len().checked_sub(own.len()).expect("containers are only ever added");
        for (i, container) in own.iter().enumerate() {
            let (Some(before), Some(after)) = (container["env"].as_array(), now[added + i]["env"].as_array()) else { continue };
            assert!(after.starts_with(before), "{list}/{i}: the container's own env entries are kept, first");
        }
    }
    Some(patched)
}

fn mutate_object(kind: Kind, object: &Value, namespace: &str) {
    let slots = object::slots(kind, object);
    if slots.is_empty() {
        return;
    }
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object().into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
    };
    let annotations = strings(&object["metadata"]["annotations"]);
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let Ok(config) = ObjectConfig::from_annotations(&annotations, name, namespace, &ObjectDefaults::default()) else { return };
    let Ok(plan) = vault_env::resolve::plan_values(slots.iter().map(|s| (s.at.as_str(), s.value.as_str())), !config.vault.transit_key_id.is_empty())
    else {
        return;
    };
    let reach = object::Reach { namespace: &config.vault.namespace, paths: &[], transit: Some("transit/decrypt/k") };
    if object::check_plan(&plan, &reach).is_err() {
        return;
    }
    let values: HashMap<String, SecretString> = plan.vars.iter().map(|(at, _)| (at.clone(), SecretString::new("v".to_string()))).collect();
    let Ok(mutated) = object::apply(kind, object, &values) else { return };
    let diff = json_patch::diff(object, &mutated);
    if let Ok(Some(patch)) = vault_env_webhook::mutate::patch::JsonPatch::from_patch(&diff) {
        assert_eq!(apply(object, &patch.json), mutated, "the diff patch gives the mutated object");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse::<Value>(data)
        && let Some(pod) = &request.object
        && serde_json::from_value::<K8sPod>(pod.clone()).is_ok()
    {
        let namespace = request.namespace.as_deref().unwrap_or("default");
        if let Some(once) = mutate_pod(pod, namespace) {
            // The API server's reinvocation: a second pass changes nothing.
            assert!(mutate_pod(&once, namespace).is_none(), "a second pass mutated the pod again");
        }
    }
    if let Ok(request) = parse::<DynamicObject>(data)
        && let Some(object) = &request.object
        && let Ok(object) = serde_json::to_value(object)
    {
        let namespace = request.namespace.as_deref().unwrap_or("");
        for kind in [Kind::Secret, Kind::ConfigMap, Kind::Object] {
            mutate_object(kind, &object, namespace);
        }
    }
});
