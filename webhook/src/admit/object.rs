//! Secret, ConfigMap and custom-object admission: annotations → the references to resolve → (not
//! on a dry run) the webhook's own Vault read → the values written back → a JSONPatch.

use super::context::{Admitted, Context, Denial};
use crate::annotations::{self, ObjectConfig};
use crate::mutate::object::{self, Kind, Reach};
use crate::mutate::patch::JsonPatch;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why an object's references are not resolved for a caller without a trusted client certificate.
pub const UNVERIFIED_CALLER: &str = "the webhook returns secret values only to the API server, verified by its client certificate: \
     set TLS_CLIENT_CA_FILE (chart: clientAuth.caBundle) and give the API server a client certificate in its \
     AdmissionConfiguration (kubeConfigFile), or, where nothing but the API server can reach the webhook, set \
     VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS=true";

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
/// object, the place and the reference, never a value. Annotations it does not act on are
/// warnings.
pub async fn mutate_object(ctx: &Context, kind: Kind, object: &Value, namespace: &str, dry_run: bool, verified: bool) -> Result<Admitted, Denial> {
    let who = object_name(object, namespace);
    let annotations = string_map(&object["metadata"]["annotations"]);
    let labels = string_map(&object["metadata"]["labels"]);
    if annotations::skipped(&annotations, &labels) {
        return Ok(Admitted::default());
    }
    let warnings = annotations::unhandled(&annotations);
    let patch = resolve_object(ctx, kind, object, namespace, (dry_run, verified), &who, &annotations).await?;
    Ok(Admitted { patch, warnings })
}

async fn resolve_object(
    ctx: &Context,
    kind: Kind,
    object: &Value,
    namespace: &str,
    (dry_run, verified): (bool, bool),
    who: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<JsonPatch>, Denial> {
    let slots = object::slots(kind, object);
    if slots.is_empty() {
        return Ok(None);
    }
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let config = ObjectConfig::from_annotations(annotations, name, namespace, &ctx.objects).map_err(|errors| Denial::all(who, &errors))?;
    let values = slots.iter().map(|s| (s.at.as_str(), s.value.as_str()));
    let plan = vault_env::resolve::plan_values(values, !config.vault.transit_key_id.is_empty()).map_err(|errors| Denial::all(who, &errors))?;
    let transit = (!plan.ciphertexts.is_empty()).then(|| format!("{}/decrypt/{}", config.transit_mount(), config.vault.transit_key_id));
    let reach = Reach { namespace: &config.vault.namespace, paths: &ctx.objects.paths, transit: transit.as_deref() };
    object::check_plan(&plan, &reach).map_err(|reasons| Denial::all(who, &reasons))?;
    if dry_run {
        return Ok(None);
    }
    if !verified && !ctx.objects.allow_unverified_callers {
        return Err(Denial::new(who, UNVERIFIED_CALLER));
    }
    let resolved = ctx.vault.resolve(&config, namespace, &ctx.kube, &plan).await.map_err(|e| Denial::new(who, e))?;
    if !resolved.leases.is_empty() {
        tracing::warn!(object = %who, "holds dynamic secrets: they end when the webhook's Vault token does (use vault-env in the pod to keep them renewed)");
    }
    let mutated = object::apply(kind, object, &resolved.values).map_err(|e| Denial::new(who, e))?;
    JsonPatch::from_patch(&json_patch::diff(object, &mutated)).map_err(|e| Denial::new(who, e))
}
