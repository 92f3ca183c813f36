//! Pod admission, top to bottom: annotations → Kubernetes reads for `valueFrom`/`envFrom` →
//! containers to mutate → registry lookups for containers without `command` → patch. The
//! decisions are the pure functions of [`crate::mutate::pod`]; this module does the reads between them.

use crate::annotations::{self, ObjectConfig, ObjectDefaults, ObjectInfo, PodConfig, PodDefaults};
use crate::fetch::cache::{Gates, TtlCache};
use crate::fetch::kube::KubeApi;
use crate::fetch::registry::{DefaultPullSecret, DockerAuth, Lookup, Platform, Registry, RegistrySettings, parse_pull_secret};
use crate::fetch::vault::{VaultAccess, VaultSettings};
use crate::metrics::Metrics;
use crate::mutate::object::{self, Kind};
use crate::mutate::patch::JsonPatch;
use crate::mutate::pod::{self, Fetched, ImageCommand, Source, Target};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

type CredentialsKey = (Vec<(String, String)>, String, String);

pub struct Context {
    pub pods: PodDefaults,
    pub objects: ObjectDefaults,
    default_pull_secret: Option<DefaultPullSecret>,
    pub kube: KubeApi,
    pub registry: Registry,
    pub vault: VaultAccess,
    /// Pull credentials by (pull secrets, ServiceAccount namespace and name), for
    /// `REGISTRY_CREDENTIALS_TTL`: spares the Kubernetes reads on every pod of a Deployment.
    credentials: Mutex<TtlCache<CredentialsKey, Vec<DockerAuth>>>,
    /// One read per key at a time: when an entry expires under load, the pods waiting for it
    /// share one read instead of each sending its own to the API server.
    credential_reads: Gates<CredentialsKey>,
    pub metrics: Arc<Metrics>,
    default_platform: Platform,
}

impl Context {
    pub fn new(pods: PodDefaults, objects: ObjectDefaults, registry: &RegistrySettings, vault: VaultSettings) -> Context {
        let metrics = Arc::new(Metrics::new());
        Context {
            pods,
            objects,
            default_pull_secret: registry.default_pull_secret.clone(),
            kube: KubeApi::new(metrics.clone()),
            credentials: Mutex::new(TtlCache::new(registry.cache_size, registry.credentials_ttl)),
            credential_reads: Gates::default(),
            default_platform: registry.default_platform.clone(),
            registry: Registry::new(registry, metrics.clone()),
            vault: VaultAccess::new(vault, metrics.clone()),
            metrics,
        }
    }

    /// A context with Bank-Vaults' defaults and `vault_addr` (unit tests; nothing is read from
    /// the process environment).
    #[cfg(test)]
    pub fn for_tests(vault_addr: &str) -> Context {
        use crate::annotations::VaultDefaults;
        use crate::annotations::vault_addr::AddrPolicy;
        let vault = VaultDefaults { addr: vault_addr.into(), ..VaultDefaults::default() };
        let pods = PodDefaults { vault: vault.clone(), ..PodDefaults::default() };
        let objects = ObjectDefaults { addr_policy: AddrPolicy::new(vault_addr, "", false), vault, ..ObjectDefaults::default() };
        let base = vault_env::config::Config::from_env(&vault_env::config::Env::default()).expect("vault-env's defaults are valid");
        Context::new(pods, objects, &RegistrySettings::default(), VaultSettings { base, own_namespace: None })
    }
}

/// `shop/web-7f9c-*` for a pod that has only a generateName.
pub fn pod_name(pod: &Pod, namespace: &str) -> String {
    let m = &pod.metadata;
    let name = match (&m.name, &m.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(g)) if !g.is_empty() => format!("{g}*"),
        _ => "(unnamed)".into(),
    };
    format!("{namespace}/{name}")
}

/// The patch for a pod, or `None` when it needs none. Errors name the pod, and the container or
/// annotation at fault; they never carry a secret value.
pub async fn mutate_pod(ctx: &Context, pod: &Pod, namespace: &str) -> Result<Option<JsonPatch>, String> {
    let who = pod_name(pod, namespace);
    let spec = pod.spec.as_ref();
    let service_account = spec.and_then(|s| s.service_account_name.as_deref()).unwrap_or("");
    let info = ObjectInfo { name: pod.metadata.name.as_deref().unwrap_or(""), namespace, service_account };
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    if annotations::skipped(annotations, labels) || pod::already_mutated(pod) {
        return Ok(None);
    }
    let config = PodConfig::from_annotations(annotations, labels, &info, &ctx.pods).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("pod {who}: {}", list.join("; "))
    })?;

    let mut fetched = Fetched::new();
    for (source, name) in pod::sources_to_fetch(pod, &config) {
        let data = match source {
            Source::Secret => ctx.kube.secret(namespace, &name).await.map(|s| s.as_ref().map(KubeApi::secret_strings)),
            Source::ConfigMap => ctx.kube.config_map(namespace, &name).await.map(|c| c.as_ref().map(KubeApi::config_map_strings)),
        };
        let data = data.map_err(|e| format!("pod {who}: container {}: {e}", referring_container(pod, source, &name)))?;
        fetched.insert((source, name), data);
    }

    let targets = pod::select(pod, &config, &fetched);
    let lookups = pod::images_to_look_up(pod, &targets);
    let mut images: HashMap<Target, ImageCommand> = HashMap::new();
    if !lookups.is_empty() {
        let credentials = pull_credentials(ctx, pod, namespace).await.map_err(|e| format!("pod {who}: {e}"))?;
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
            let command = ctx
                .registry
                .image_command(&lookup)
                .await
                .map_err(|e| format!("pod {who}: container {}: it has no command, and the image's ENTRYPOINT/CMD cannot be read: {e}", c.name))?;
            images.insert(target, command);
        }
    }
    pod::patch(pod, &config, &targets, &images).map_err(|e| format!("pod {who}: {e}"))
}

/// `secret shop/regcred`, `configmap shop/app-*`, `ingress shop/web`.
pub fn object_name(object: &Value, namespace: &str) -> String {
    let meta = &object["metadata"];
    let kind = object["kind"].as_str().unwrap_or("object").to_ascii_lowercase();
    let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) if !g.is_empty() => format!("{g}*"),
        _ => "(unnamed)".into(),
    };
    match namespace {
        "" => format!("{kind} {name}"),
        ns => format!("{kind} {ns}/{name}"),
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value.as_object().into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
}

/// The patch that puts the Vault values into a Secret, ConfigMap or other object, or `None` when
/// it holds no reference (then Vault is not contacted) or the request is a dry run (references
/// and annotations are still checked, but nothing is read or written in Vault). Errors name the
/// object, the place and the reference, never a value.
pub async fn mutate_object(ctx: &Context, kind: Kind, object: &Value, namespace: &str, dry_run: bool) -> Result<Option<JsonPatch>, String> {
    let who = object_name(object, namespace);
    let annotations = string_map(&object["metadata"]["annotations"]);
    let labels = string_map(&object["metadata"]["labels"]);
    if annotations::skipped(&annotations, &labels) {
        return Ok(None);
    }
    let slots = object::slots(kind, object);
    if slots.is_empty() {
        return Ok(None);
    }
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let config = ObjectConfig::from_annotations(&annotations, name, namespace, &ctx.objects).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("{who}: {}", list.join("; "))
    })?;
    let values = slots.iter().map(|s| (s.at.as_str(), s.value.as_str()));
    let plan = vault_env::resolve::plan_values(values, !config.vault.transit_key_id.is_empty()).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("{who}: {}", list.join("; "))
    })?;
    if dry_run {
        return Ok(None);
    }
    let resolved = ctx.vault.resolve(&config, namespace, &ctx.kube, &plan).await.map_err(|e| format!("{who}: {e}"))?;
    if !resolved.leases.is_empty() {
        tracing::warn!(object = %who, "holds dynamic secrets: they end when the webhook's Vault token does (use vault-env in the pod to keep them renewed)");
    }
    let mutated = object::apply(kind, object, &resolved.values).map_err(|e| format!("{who}: {e}"))?;
    JsonPatch::from_patch(&json_patch::diff(object, &mutated)).map_err(|e| format!("{who}: {e}"))
}

fn referring_container(pod: &Pod, source: Source, name: &str) -> String {
    for (_, c) in pod::containers(pod) {
        let by_env = c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()).any(|f| match source {
            Source::Secret => f.secret_key_ref.as_ref().is_some_and(|r| r.name == name),
            Source::ConfigMap => f.config_map_key_ref.as_ref().is_some_and(|r| r.name == name),
        });
        let by_env_from = c.env_from.iter().flatten().any(|f| match source {
            Source::Secret => f.secret_ref.as_ref().is_some_and(|r| r.name == name),
            Source::ConfigMap => f.config_map_ref.as_ref().is_some_and(|r| r.name == name),
        });
        if by_env || by_env_from {
            return c.name.clone();
        }
    }
    "?".into()
}

/// The platform a pod's node selector pins, if any.
fn pod_platform(pod: &Pod) -> Option<Platform> {
    let selector = pod.spec.as_ref()?.node_selector.as_ref()?;
    let get = |k: &str| selector.get(&format!("kubernetes.io/{k}")).or_else(|| selector.get(&format!("beta.kubernetes.io/{k}")));
    let arch = get("arch")?;
    Some(Platform { os: get("os").cloned().unwrap_or_else(|| "linux".into()), arch: arch.clone(), variant: None })
}

/// Pull credentials as the kubelet would use them: the pod's `imagePullSecrets`, then its
/// ServiceAccount's; with none on the pod, the webhook's `DEFAULT_IMAGE_PULL_SECRET*`.
async fn pull_credentials(ctx: &Context, pod: &Pod, namespace: &str) -> Result<Vec<DockerAuth>, String> {
    let spec = pod.spec.as_ref();
    let mut secrets: Vec<(String, String)> =
        spec.and_then(|s| s.image_pull_secrets.as_ref()).iter().flat_map(|v| v.iter()).map(|r| (namespace.to_string(), r.name.clone())).collect();
    let (sa_namespace, sa_name) = match (&ctx.default_pull_secret, secrets.is_empty()) {
        (Some(d), true) => {
            secrets.push((d.namespace.clone(), d.secret.clone()));
            (d.namespace.clone(), d.service_account.clone())
        }
        _ => (namespace.to_string(), spec.and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into())),
    };
    let key = (secrets.clone(), sa_namespace.clone(), sa_name.clone());
    let cached = || ctx.credentials.lock().unwrap_or_else(|p| p.into_inner()).get(&key);
    if let Some(found) = cached() {
        return Ok(found);
    }
    let _gate = ctx.credential_reads.pass(&key).await;
    if let Some(found) = cached() {
        return Ok(found);
    }
    let out = read_pull_credentials(ctx, secrets, &sa_namespace, &sa_name).await?;
    ctx.credentials.lock().unwrap_or_else(|p| p.into_inner()).put(key.clone(), out.clone());
    Ok(out)
}

async fn read_pull_credentials(
    ctx: &Context,
    mut secrets: Vec<(String, String)>,
    sa_namespace: &str,
    sa_name: &str,
) -> Result<Vec<DockerAuth>, String> {
    if !sa_name.is_empty()
        && let Some(sa) = ctx.kube.service_account(sa_namespace, sa_name).await.map_err(|e| e.to_string())?
    {
        secrets.extend(sa.image_pull_secrets.iter().flatten().map(|r| (sa_namespace.to_string(), r.name.clone())));
    }
    let mut out = Vec::new();
    for (ns, name) in secrets {
        match ctx.kube.secret(&ns, &name).await.map_err(|e| e.to_string())? {
            None => tracing::warn!(secret = %format!("{ns}/{name}"), "image pull secret not found; skipped"),
            Some(secret) => {
                let data: BTreeMap<String, Vec<u8>> = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                match parse_pull_secret(&data) {
                    Ok(creds) => out.extend(creds),
                    Err(why) => tracing::warn!(secret = %format!("{ns}/{name}"), "image pull secret skipped: {why}"),
                }
            }
        }
    }
    Ok(out)
}
