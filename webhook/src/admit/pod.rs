//! Pod admission, top to bottom: annotations → Kubernetes reads for `valueFrom`/`envFrom` →
//! containers to mutate → pull credentials and registry lookups for containers without
//! `command` → patch. The decisions are the pure functions of [`crate::mutate::pod`]; this module
//! does the reads between them.

use super::context::{Admitted, Context, Denial};
use crate::annotations::{self, ObjectInfo, PodConfig};
use crate::fetch::kube::KubeApi;
use crate::fetch::registry::{Lookup, Platform};
use crate::model::Pod;
use crate::mutate::pod::{self, ContainerRef, DataSource, ImageCommand, SourceData};
use std::collections::{BTreeMap, HashMap};

/// `shop/web-7f9c-*` for a pod that has only a generateName.
pub fn pod_name(pod: &Pod<'_>, namespace: &str) -> String {
    let m = &pod.metadata;
    let name = match (&m.name, &m.generate_name) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) if !g.is_empty() => format!("{g}*"),
        _ => "(unnamed)".into(),
    };
    format!("{namespace}/{name}")
}

/// The patch for a pod (none when it needs none), with warnings for annotations it does not act
/// on. Errors name the pod, and the container or annotation at fault; they never carry a secret
/// value.
pub async fn mutate_pod(ctx: &Context, pod: &Pod<'_>, namespace: &str) -> Result<Admitted, Denial> {
    // Named only in a denial: most reviews never need it.
    let who = || format!("pod {}", pod_name(pod, namespace));
    let spec = pod.spec.as_ref();
    let service_account = spec.and_then(|s| s.service_account_name.as_deref()).unwrap_or("");
    let info = ObjectInfo { name: pod.metadata.name.as_deref().unwrap_or(""), namespace, service_account };
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    if annotations::skipped(annotations, labels) {
        return Ok(Admitted::default());
    }
    if pod::mutated_by_successor(pod) {
        let warning = "already mutated by Bank-Vaults' secrets-webhook (secret-init): left alone, not wrapped twice".to_string();
        return Ok(Admitted { patch: None, warnings: vec![warning] });
    }
    let mut warnings = annotations::unhandled(annotations);
    let config = PodConfig::from_annotations(annotations, labels, &info, &ctx.pods).map_err(|errors| Denial::all(&who(), &errors))?;
    warnings.extend(config.warnings.iter().cloned());

    let mut fetched = SourceData::new();
    for (source, name) in pod::sources_to_fetch(pod, &config) {
        let data = match source {
            DataSource::Secret => ctx.kube.secret(namespace, &name).await.map(|s| s.as_ref().map(KubeApi::secret_strings)),
            DataSource::ConfigMap => ctx.kube.config_map(namespace, &name).await.map(|c| c.as_ref().map(KubeApi::config_map_strings)),
        };
        let data = data.map_err(|e| Denial::new(&who(), format!("container {}: {e}", referring_container(pod, source, &name))))?;
        fetched.insert((source, name), data);
    }

    let targets = pod::select(pod, &config, &fetched);
    let lookups = pod::images_to_look_up(pod, &targets);
    let mut images: HashMap<ContainerRef, ImageCommand> = HashMap::new();
    if !lookups.is_empty() {
        let credentials = ctx.pull_credentials.for_pod(&ctx.kube, pod, namespace).await.map_err(|e| Denial::new(&who(), e))?;
        let platform = pod_platform(pod).unwrap_or_else(|| ctx.default_platform.clone());
        for target in lookups {
            let Some(c) = pod::container(pod, target) else { continue };
            let image = c.image.as_deref().unwrap_or("");
            let lookup = Lookup {
                image,
                pull_policy: c.image_pull_policy.as_deref(),
                credentials: &credentials,
                platform: &platform,
                skip_verify: config.registry_skip_verify,
            };
            let command = ctx.registry.image_command(&lookup).await.map_err(|e| {
                Denial::new(&who(), format!("container {}: it has no command, and the image's ENTRYPOINT/CMD cannot be read: {e}", c.name))
            })?;
            images.insert(target, command);
        }
    }
    let patch = pod::patch(pod, &config, &targets, &images).map_err(|e| Denial::new(&who(), e))?;
    Ok(Admitted { patch, warnings })
}

fn referring_container(pod: &Pod, source: DataSource, name: &str) -> String {
    pod::containers(pod)
        .find(|(_, c)| pod::container_sources(c).any(|s| s.source == source && s.name == name))
        .map_or_else(|| "?".into(), |(_, c)| c.name.to_string())
}

/// The platform a pod's node selector pins, if any.
fn pod_platform(pod: &Pod) -> Option<Platform> {
    let selector = pod.spec.as_ref()?.node_selector.as_ref()?;
    let get = |k: &str| selector.get(&format!("kubernetes.io/{k}")).or_else(|| selector.get(&format!("beta.kubernetes.io/{k}")));
    let arch = get("arch")?;
    Some(Platform { os: get("os").cloned().unwrap_or_else(|| "linux".into()), arch: arch.clone(), variant: None })
}
