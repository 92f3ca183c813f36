//! Prometheus metrics (`/metrics`): admission reviews, registry lookups, Kubernetes API calls,
//! the webhook's own Vault logins and its ECR tokens.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub kind: &'static str,
    pub operation: &'static str,
    pub dry_run: &'static str,
    pub mutated: &'static str,
    /// `allowed`, `denied` (a mutation error) or `invalid` (a malformed request).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Registry lookups: the registry host; Kubernetes API: the resource (`secrets`, …).
    pub target: String,
    /// `ok`, `cached`, `not_found` or `error`.
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Histogram>,
    pub registry_lookups: Family<CallLabels, Counter>,
    pub registry_duration: Family<CallLabels, Histogram>,
    pub kube_calls: Family<CallLabels, Counter>,
    pub kube_duration: Family<CallLabels, Histogram>,
    /// The webhook's own Vault logins (Secrets, ConfigMaps, objects); target: the Vault address.
    pub vault_logins: Family<CallLabels, Counter>,
    /// ECR authorization tokens fetched (not those reused); target: the registry.
    pub ecr_tokens: Family<CallLabels, Counter>,
    /// GCR/Artifact Registry access tokens, ACR refresh tokens: target is the registry.
    pub gcp_tokens: Family<CallLabels, Counter>,
    pub acr_tokens: Family<CallLabels, Counter>,
    /// The registries named in labels so far: the first [`MAX_REGISTRY_LABELS`], then `other`.
    registry_labels: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Registry hosts come from pods: each distinct one would be a series kept for the process's
/// life (1,500 registries made 3.9 MB of metrics). The first this many are named, the rest
/// counted as `other`.
pub const MAX_REGISTRY_LABELS: usize = 32;

fn latency_histogram() -> Histogram {
    // 50 µs … ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vault_webhook");
        let reviews = Family::<ReviewLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let registry_lookups = Family::<CallLabels, Counter>::default();
        let registry_duration = Family::<CallLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let kube_calls = Family::<CallLabels, Counter>::default();
        let kube_duration = Family::<CallLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("review_duration_seconds", "Time to answer an AdmissionReview", reviews.clone());
        registry.register("registry_lookups", "Image config lookups (ENTRYPOINT/CMD)", registry_lookups.clone());
        registry.register("registry_lookup_duration_seconds", "Time of image config lookups", registry_duration.clone());
        registry.register("kubernetes_api_requests", "Kubernetes API reads", kube_calls.clone());
        registry.register("kubernetes_api_request_duration_seconds", "Time of Kubernetes API reads", kube_duration.clone());
        let vault_logins = Family::<CallLabels, Counter>::default();
        registry.register("vault_logins", "The webhook's own Vault logins (a token is reused until near its expiry)", vault_logins.clone());
        let ecr_tokens = Family::<CallLabels, Counter>::default();
        registry.register("ecr_tokens", "ECR authorization tokens fetched with the webhook's AWS credentials", ecr_tokens.clone());
        let gcp_tokens = Family::<CallLabels, Counter>::default();
        registry.register("gcp_tokens", "Google access tokens fetched for GCR/Artifact Registry with the webhook's identity", gcp_tokens.clone());
        let acr_tokens = Family::<CallLabels, Counter>::default();
        registry.register("acr_tokens", "ACR refresh tokens obtained with the webhook's Azure identity", acr_tokens.clone());
        Metrics {
            registry,
            reviews,
            registry_lookups,
            registry_duration,
            kube_calls,
            kube_duration,
            vault_logins,
            ecr_tokens,
            gcp_tokens,
            acr_tokens,
            registry_labels: Default::default(),
        }
    }

    /// The label for a registry host: itself while fewer than [`MAX_REGISTRY_LABELS`] are named,
    /// else `other`.
    fn registry_label(&self, host: &str) -> String {
        let mut named = self.registry_labels.lock().unwrap_or_else(|p| p.into_inner());
        if named.contains(host) {
            return host.to_string();
        }
        if named.len() < MAX_REGISTRY_LABELS {
            named.insert(host.to_string());
            return host.to_string();
        }
        "other".into()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn registry_call(&self, target: &str, outcome: &str, took: Duration) {
        let labels = CallLabels { target: self.registry_label(target), outcome: outcome.into() };
        self.registry_lookups.get_or_create(&labels).inc();
        self.registry_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn vault_login(&self, addr: &str, outcome: &str) {
        self.vault_logins.get_or_create(&CallLabels { target: addr.into(), outcome: outcome.into() }).inc();
    }

    pub fn ecr_token(&self, registry: &str, outcome: &str) {
        self.ecr_tokens.get_or_create(&CallLabels { target: self.registry_label(registry), outcome: outcome.into() }).inc();
    }

    pub fn gcp_token(&self, registry: &str, outcome: &str) {
        self.gcp_tokens.get_or_create(&CallLabels { target: self.registry_label(registry), outcome: outcome.into() }).inc();
    }

    pub fn acr_token(&self, registry: &str, outcome: &str) {
        self.acr_tokens.get_or_create(&CallLabels { target: self.registry_label(registry), outcome: outcome.into() }).inc();
    }

    pub fn kube_call(&self, resource: &str, outcome: &str, took: Duration) {
        let labels = CallLabels { target: resource.into(), outcome: outcome.into() };
        self.kube_calls.get_or_create(&labels).inc();
        self.kube_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_families() {
        let m = Metrics::new();
        m.reviews
            .get_or_create(&ReviewLabels { kind: "Pod", operation: "CREATE", dry_run: "false", mutated: "true", outcome: "allowed" })
            .observe(0.001);
        m.registry_call("ghcr.io", "ok", Duration::from_millis(3));
        m.kube_call("secrets", "not_found", Duration::from_millis(1));
        let text = m.encode();
        assert!(
            text.contains(
                r#"vault_webhook_review_duration_seconds_count{kind="Pod",operation="CREATE",dry_run="false",mutated="true",outcome="allowed"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"vault_webhook_registry_lookups_total{target="ghcr.io",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"vault_webhook_kubernetes_api_requests_total{target="secrets",outcome="not_found"} 1"#), "{text}");
    }

    /// 1,500 registries named by pods made 1,500 series; the label set is bounded.
    #[test]
    fn registry_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..1500 {
            m.registry_call(&format!("127.0.{}.{}:{}", i / 250, i % 250, 20000 + i), "error", Duration::from_millis(1));
        }
        let text = m.encode();
        let series = text.lines().filter(|l| l.starts_with("vault_webhook_registry_lookups_total{")).count();
        assert_eq!(series, MAX_REGISTRY_LABELS + 1, "{text}");
        assert!(text.contains(&format!(r#"vault_webhook_registry_lookups_total{{target="other",outcome="error"}} {}"#, 1500 - MAX_REGISTRY_LABELS)));
    }
}
