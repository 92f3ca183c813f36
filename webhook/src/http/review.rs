//! AdmissionReview in, AdmissionReview out (`admission.k8s.io/v1`, and `v1beta1` answered in
//! kind). Malformed input is a 400 with a message; a mutation error is an `allowed: false` answer
//! naming pod, container and annotation, so a pod never starts with unresolved `vault:` values.

use crate::admit::{Admitted, Context, Denial, mutate_object, mutate_pod, object_name, pod_name};
use crate::metrics::ReviewLabels;
use crate::model::Pod;
use crate::mutate::object::Kind;
use crate::mutate::patch::JsonPatch;
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde::de::IgnoredAny;
use serde_json::json;
use std::time::Instant;

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

/// An HTTP status and a JSON body.
pub type Answer = (u16, Vec<u8>);

fn bad_request(message: String) -> Answer {
    (
        400,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400, "reason": "BadRequest", "message": message})
            .to_string()
            .into_bytes(),
    )
}

/// The AdmissionReview around `response`; a patch is base64-encoded straight into the body (it
/// is most of the answer: no `Value` holding it, no second copy, no text check of the encoding),
/// with the CPU's vector instructions where it has them (`base64-simd`: the `base64` crate's
/// scalar encoder was a sixth of a review's time).
fn answer(api_version: &str, response: &Response<'_>, patch: Option<&JsonPatch>) -> Answer {
    let review = Review { api_version, kind: "AdmissionReview", response };
    let capacity = 160 + response.uid.len() + patch.map_or(0, |p| 40 + p.json.len().div_ceil(3) * 4);
    let mut out = Vec::with_capacity(capacity);
    if let Err(e) = serde_json::to_writer(&mut out, &review) {
        tracing::error!("cannot write the answer: {e}");
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "cannot write the answer"});
        return (500, status.to_string().into_bytes());
    }
    let Some(patch) = patch else { return (200, out) };
    // `out` ends with the `}` of the response and the `}` of the review.
    out.truncate(out.len() - 2);
    out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
    base64_simd::STANDARD.encode_append(&patch.json, &mut out);
    out.extend_from_slice(b"\"}}");
    (200, out)
}

/// An AdmissionReview as it is answered. Typed (no `Value` built per review); the fields of each
/// object in the order of their names, as a `Value` writes them.
#[derive(serde::Serialize)]
struct Review<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    response: &'a Response<'a>,
}

#[derive(Debug, Default, serde::Serialize)]
struct Response<'a> {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Refusal>,
    uid: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// Why an object is not allowed: `status` of a denied review's response.
#[derive(Debug, serde::Serialize)]
struct Refusal {
    code: u16,
    message: String,
    reason: &'static str,
}

/// Why a request body is not an admission review (a 400, with this text).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("expected kind AdmissionReview of {V1} or {V1BETA1}, got kind {kind:?} of {api_version:?}")]
    WrongKind { kind: String, api_version: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// An AdmissionReview as it arrives: only what the webhook reads is kept. (kube's
/// `AdmissionReview` flattens its type fields, which makes serde buffer the whole review, pod
/// and old pod included, and read it twice: that was a third of a pod review's time.)
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    api_version: String,
    kind: String,
    request: Option<Request<T>>,
}

/// The request of a review. `kind`, `resource` and `userInfo` must be there, as the API server
/// always sends them; `oldObject`, `options` and the rest are skipped unread.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<T> {
    /// `admission.k8s.io/v1` or `v1beta1`: the answer is given in the same version.
    #[serde(skip)]
    pub api_version: String,
    pub uid: String,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(rename = "userInfo")]
    _user_info: IgnoredAny,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    pub object: Option<T>,
    #[serde(default)]
    pub dry_run: bool,
}

/// Reads the review; a wrong apiVersion/kind or a missing request is a 400. The body is checked
/// as UTF-8 once, whole: faster than serde_json's check of each string when it reads bytes.
pub fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<Request<T>, ReviewError> {
    let text = std::str::from_utf8(body).map_err(|e| ReviewError::NotAReview(format!("the body is not UTF-8 text: {e}")))?;
    let review: Envelope<T> = serde_json::from_str(text).map_err(|e| ReviewError::NotAReview(e.to_string()))?;
    if review.kind != "AdmissionReview" || !matches!(review.api_version.as_str(), V1 | V1BETA1) {
        return Err(ReviewError::WrongKind { kind: review.kind, api_version: review.api_version });
    }
    let mut request = review.request.ok_or(ReviewError::NoRequest)?;
    request.api_version = review.api_version;
    Ok(request)
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// `POST /pods`. Containers can't change after creation: only CREATE is mutated.
pub async fn review_pod(ctx: &Context, body: &[u8]) -> Answer {
    let started = Instant::now();
    let request = match parse::<Pod>(body) {
        Ok(request) => request,
        Err(error) => return invalid(ctx, "Pod", started, error),
    };
    let namespace = request.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    let outcome = match (&request.operation, &request.object) {
        (Operation::Create, Some(pod)) => mutate_pod(ctx, pod, namespace).await.map(|admitted| {
            // The name is for the info lines of `respond` only.
            let who = if tracing::enabled!(tracing::Level::INFO) { pod_name(pod, namespace) } else { String::new() };
            (admitted, who)
        }),
        _ => Ok((Admitted::default(), String::new())),
    };
    respond(ctx, "Pod", started, &request, outcome)
}

/// `POST /secrets`, `POST /configmaps` and `POST /objects`: CREATE and UPDATE are resolved.
/// `verified`: the caller showed a client certificate the webhook trusts (only then are values
/// returned, unless the operator allows unverified callers).
pub async fn review_object(ctx: &Context, body: &[u8], kind: Kind, verified: bool) -> Answer {
    let label = match kind {
        Kind::Secret => "Secret",
        Kind::ConfigMap => "ConfigMap",
        // Not the request's kind: that comes from the caller, and each new one would be a new
        // series kept forever.
        Kind::Object => "Object",
    };
    let started = Instant::now();
    let request = match parse::<DynamicObject>(body) {
        Ok(request) => request,
        Err(error) => return invalid(ctx, label, started, error),
    };
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let outcome = match (&request.operation, &request.object) {
        (Operation::Create | Operation::Update, Some(object)) => match serde_json::to_value(object) {
            Ok(object) => mutate_object(ctx, kind, &object, namespace, request.dry_run, verified)
                .await
                .map(|admitted| (admitted, object_name(&object, namespace))),
            Err(e) => Err(Denial::new("object", format!("cannot read it: {e}"))),
        },
        _ => Ok((Admitted::default(), String::new())),
    };
    respond(ctx, label, started, &request, outcome)
}

/// A body that is not a review: a 400, counted as `invalid`.
fn invalid(ctx: &Context, kind: &'static str, started: Instant, error: ReviewError) -> Answer {
    tracing::warn!("rejected a malformed request: {error}");
    let labels = ReviewLabels { kind, operation: "", dry_run: "", mutated: "false", outcome: "invalid" };
    ctx.metrics.reviews.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    bad_request(error.to_string())
}

/// The answer to a review: what was admitted (with the object's name for the log) or why the
/// object is denied; the metrics recorded.
fn respond<T>(ctx: &Context, kind: &'static str, started: Instant, request: &Request<T>, outcome: Result<(Admitted, String), Denial>) -> Answer {
    let mut labels = ReviewLabels {
        kind,
        operation: operation_name(&request.operation),
        dry_run: if request.dry_run { "true" } else { "false" },
        mutated: "false",
        outcome: "allowed",
    };
    let mut response = Response { allowed: true, uid: &request.uid, ..Response::default() };
    let mut patch = None;
    match outcome {
        Ok((admitted, who)) => {
            if !admitted.warnings.is_empty() {
                tracing::info!(object = %who, warnings = ?admitted.warnings, "admitted with warnings");
                response.warnings = admitted.warnings;
            }
            if let Some(p) = admitted.patch {
                labels.mutated = "true";
                tracing::info!(object = %who, operations = p.ops, dry_run = request.dry_run, "mutated");
                patch = Some(p);
            }
        }
        Err(denial) => {
            let message = denial.to_string();
            tracing::warn!("denied: {message}");
            response.allowed = false;
            response.status = Some(Refusal { code: 400, message: format!("vault-secrets-webhook: {message}"), reason: "BadRequest" });
            labels.outcome = "denied";
        }
    }
    let answer = answer(&request.api_version, &response, patch.as_ref());
    ctx.metrics.reviews.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    fn ctx() -> Context {
        Context::for_tests("https://vault.vault:8200")
    }

    /// The typed answer is the text the `Value` it replaced wrote, byte for byte (keys sorted),
    /// for an allowed review with warnings and a patch, and for a denied one.
    #[test]
    fn answers_are_written_as_before() {
        let warned = Response { allowed: true, uid: "u-1", warnings: vec!["w \"1\"".into(), "w2".into()], ..Response::default() };
        let (status, body) = answer(V1BETA1, &warned, Some(&JsonPatch { json: b"[]".to_vec(), ops: 0 }));
        let before =
            json!({"apiVersion": V1BETA1, "kind": "AdmissionReview", "response": {"uid": "u-1", "allowed": true, "warnings": ["w \"1\"", "w2"]}});
        let before = format!(r#"{},"patchType":"JSONPatch","patch":"W10="}}}}"#, before.to_string().strip_suffix("}}").unwrap());
        assert_eq!((status, String::from_utf8(body).unwrap()), (200, before));
        let refusal = Refusal { code: 400, message: "vault-secrets-webhook: no".into(), reason: "BadRequest" };
        let denied = Response { allowed: false, uid: "u-2", status: Some(refusal), ..Response::default() };
        let before = json!({"apiVersion": V1, "kind": "AdmissionReview", "response": {"uid": "u-2", "allowed": false,
            "status": {"code": 400, "reason": "BadRequest", "message": "vault-secrets-webhook: no"}}});
        assert_eq!(answer(V1, &denied, None), (200, before.to_string().into_bytes()));
    }

    /// The patch's base64 (written by `base64-simd`) reads back with the `base64` crate, for every
    /// remainder of its length by 3 and for lengths around the vector width.
    #[test]
    fn the_patch_is_standard_padded_base64() {
        for len in [1, 2, 3, 4, 5, 31, 32, 33, 47, 48, 49, 95, 96, 97, 1000, 8058] {
            let json: Vec<u8> = (0..len).map(|i| b"[{\"op\":\"add\"}]~/"[i % 16]).collect();
            let response = Response { allowed: true, uid: "u", ..Response::default() };
            let (status, body) = answer(V1, &response, Some(&JsonPatch { json: json.clone(), ops: 1 }));
            let (_, review) = json_of((status, body));
            assert_eq!((status, &review["response"]["patchType"], &review["response"]["uid"]), (200, &json!("JSONPatch"), &json!("u")));
            assert_eq!(STANDARD.decode(review["response"]["patch"].as_str().unwrap()).unwrap(), json, "length {len}");
        }
    }

    #[test]
    fn bodies_that_are_not_reviews_say_which_way() {
        use k8s_openapi::api::core::v1::Pod;
        assert!(matches!(parse::<Pod>(b"{"), Err(ReviewError::NotAReview(_))));
        let wrong = parse::<Pod>(br#"{"apiVersion":"v1","kind":"Pod"}"#).unwrap_err();
        assert_eq!(wrong, ReviewError::WrongKind { kind: "Pod".into(), api_version: "v1".into() });
        assert_eq!(wrong.to_string(), r#"expected kind AdmissionReview of admission.k8s.io/v1 or admission.k8s.io/v1beta1, got kind "Pod" of "v1""#);
        assert_eq!(parse::<Pod>(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err(), ReviewError::NoRequest);
        // What the API server always sends is still required, though only read in part; what
        // is not read (the old object, options) is skipped, whatever it holds.
        let request = r#""uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE""#;
        let body = |extra: &str| format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{{request}{extra}}}}}"#);
        let missing = parse::<Pod>(body("").as_bytes()).unwrap_err();
        assert!(matches!(&missing, ReviewError::NotAReview(e) if e.contains("missing field `userInfo`")), "{missing}");
        let read = parse::<Pod>(
            body(r#","userInfo":{},"namespace":"shop","oldObject":[1,"x"],"dryRun":true,"object":{"metadata":{"name":"p"}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!((read.uid.as_str(), read.namespace.as_deref(), read.dry_run, read.api_version.as_str()), ("u", Some("shop"), true, V1));
        assert_eq!(read.object.and_then(|p| p.metadata.name).as_deref(), Some("p"));
    }

    fn review(api_version: &str, operation: &str, pod: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": api_version, "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop", "operation": operation,
                "userInfo": {"username": "admin"},
                "object": pod, "oldObject": null, "dryRun": false,
            }
        }))
        .unwrap()
    }

    fn app_pod(annotations: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "annotations": annotations},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "app:1", "command": ["app"],
                "env": [{"name": "PW", "value": "vault:secret/data/db#password"}]}]}})
    }

    fn json_of((status, body): Answer) -> (u16, Value) {
        (status, serde_json::from_slice(&body).expect("the answer is JSON"))
    }

    fn patched(answer: &(u16, Value), original: &[u8]) -> Pod<'static> {
        let review: Value = serde_json::from_slice(original).unwrap();
        let patch = STANDARD.decode(answer.1["response"]["patch"].as_str().unwrap()).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut doc = review["request"]["object"].clone();
        json_patch::patch(&mut doc, &patch).unwrap();
        crate::model::from_json(doc)
    }

    #[tokio::test]
    async fn v1_and_v1beta1_are_answered_in_kind() {
        for version in [V1, V1BETA1] {
            let body = review(version, "CREATE", app_pod(json!({"vault.security.banzaicloud.io/vault-env-daemon": "true"})));
            let a = json_of(review_pod(&ctx(), &body).await);
            assert_eq!(a.0, 200);
            assert_eq!(a.1["apiVersion"], version);
            assert_eq!(a.1["kind"], "AdmissionReview");
            assert_eq!(a.1["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert_eq!(a.1["response"]["allowed"], true);
            assert_eq!(a.1["response"]["patchType"], "JSONPatch");
            let pod = patched(&a, &body);
            let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
            assert!(env.iter().any(|e| e.name == "VAULT_ENV_DAEMON" && e.value.as_deref() == Some("true")));
            assert!(env.iter().any(|e| e.name == "VAULT_ROLE" && e.value.as_deref() == Some("web")));
        }
    }

    /// 3,000 invented kinds grew /metrics to 12 MB; /objects reviews are one series now.
    #[tokio::test]
    async fn object_kinds_from_requests_do_not_make_metric_series() {
        let c = ctx();
        for i in 0..50 {
            let kind = format!("Invented{i}");
            let body = serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": "u", "kind": {"group": "x", "version": "v1", "kind": kind},
                "resource": {"group": "x", "version": "v1", "resource": "r"}, "namespace": "n", "operation": "CREATE",
                "userInfo": {}, "object": {"apiVersion": "x/v1", "kind": kind, "metadata": {"name": "a"}}, "oldObject": null, "dryRun": false}}))
            .unwrap();
            assert_eq!(review_object(&c, &body, Kind::Object, true).await.0, 200);
        }
        let text = c.metrics.encode();
        assert!(!text.contains("Invented"), "{text}");
        assert!(text.contains(r#"vault_webhook_review_duration_seconds_count{kind="Object",operation="CREATE",dry_run="false",mutated="false",outcome="allowed"} 50"#), "{text}");
    }

    #[tokio::test]
    async fn bad_annotation_is_a_denial_naming_it() {
        let body = review(V1, "CREATE", app_pod(json!({"vault.security.banzaicloud.io/vault-env-daemon": "perhaps"})));
        let a = json_of(review_pod(&ctx(), &body).await);
        assert_eq!(a.0, 200);
        assert_eq!(a.1["response"]["allowed"], false);
        let message = a.1["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("pod shop/web-*") && message.contains("vault.security.banzaicloud.io/vault-env-daemon"), "{message}");
    }

    #[tokio::test]
    async fn malformed_requests_are_400() {
        let c = ctx();
        for body in [&b"not json"[..], br#"{"apiVersion":"v1","kind":"Pod"}"#, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#] {
            let a = json_of(review_pod(&c, body).await);
            assert_eq!(a.0, 400, "{}", String::from_utf8_lossy(body));
            assert!(!a.1["message"].as_str().unwrap().is_empty());
        }
        let mut wrong = serde_json::from_slice::<Value>(&review(V1, "CREATE", app_pod(json!({})))).unwrap();
        wrong["request"]["object"]["spec"]["containers"] = json!("nope");
        assert_eq!(review_pod(&c, &serde_json::to_vec(&wrong).unwrap()).await.0, 400);
    }

    #[tokio::test]
    async fn updates_and_plain_pods_pass_unchanged() {
        let c = ctx();
        let a = json_of(review_pod(&c, &review(V1, "UPDATE", app_pod(json!({})))).await);
        assert_eq!((a.1["response"]["allowed"].clone(), a.1["response"].get("patch")), (json!(true), None));
        let mut plain = app_pod(json!({}));
        plain["spec"]["containers"][0]["env"][0]["value"] = json!("not a reference");
        let a = json_of(review_pod(&c, &review(V1, "CREATE", plain)).await);
        assert_eq!((a.1["response"]["allowed"].clone(), a.1["response"].get("patch")), (json!(true), None));
        // Opted out: not even a bad annotation matters.
        let skip = app_pod(json!({"vault.security.banzaicloud.io/mutate": "skip", "vault.security.banzaicloud.io/vault-env-daemon": "?"}));
        let a = json_of(review_pod(&c, &review(V1, "CREATE", skip)).await);
        assert_eq!((a.1["response"]["allowed"].clone(), a.1["response"].get("patch")), (json!(true), None));
        let text = c.metrics.encode();
        assert!(text.contains(r#"operation="UPDATE",dry_run="false",mutated="false",outcome="allowed"} 1"#), "{text}");
    }

    fn object_review(operation: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": V1, "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Secret"},
                "resource": {"group": "", "version": "v1", "resource": "secrets"},
                "namespace": "shop", "operation": operation, "userInfo": {"username": "admin"},
                "object": object, "oldObject": null, "dryRun": false,
            }
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn objects_deletes_plain_values_and_syntax_errors() {
        // VAULT_ADDR points nowhere: none of these may reach Vault.
        let c = Context::for_tests("http://127.0.0.1:1");
        let plain = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "cGxhaW4="}});
        for (operation, object) in [("CREATE", plain.clone()), ("UPDATE", plain), ("DELETE", Value::Null)] {
            let a = json_of(review_object(&c, &object_review(operation, object), Kind::Secret, true).await);
            assert_eq!((a.0, a.1["response"]["allowed"].clone(), a.1["response"].get("patch")), (200, json!(true), None), "{operation}");
        }
        let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"a": "vault:secret/data/x", "b": "vault:v1:abc"}});
        let a = json_of(review_object(&c, &object_review("CREATE", bad), Kind::Secret, true).await);
        let message = a.1["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("secret shop/s: stringData[a]: vault:secret/data/x: malformed reference"), "{message}");
        assert!(message.contains("stringData[b]: vault:v1:abc…: an encrypted value needs"), "{message}");
        assert_eq!(review_object(&c, b"{}", Kind::Object, true).await.0, 400);
        let text = c.metrics.encode();
        assert!(text.contains(r#"kind="Secret",operation="DELETE",dry_run="false",mutated="false",outcome="allowed"} 1"#), "{text}");
    }
}

/// `scripts/bench-webhook.sh` runs this (ignored otherwise): the handler's own cost per review
/// of its pod, in process, without HTTP or TLS: a stable figure on a noisy machine.
#[cfg(test)]
mod bench {
    use super::*;

    #[tokio::test]
    #[ignore = "a benchmark: scripts/bench-webhook.sh runs it with VAULT_ENV_BENCH_REVIEW"]
    async fn review_cost() {
        let env = vault_env::config::Env::from_process();
        let file = env.get("VAULT_ENV_BENCH_REVIEW").expect("VAULT_ENV_BENCH_REVIEW names the review to answer");
        let body = std::fs::read(file).expect("the review file");
        let ctx = Context::for_tests("https://vault.vault:8200");
        let (status, answer) = review_pod(&ctx, &body).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(status == 200 && answer.contains(r#""patch":""#), "the benchmark pod was not mutated: {answer}");
        let rounds = 20_000;
        let per_round = |started: Instant| started.elapsed().as_secs_f64() / f64::from(rounds) * 1e6;
        let mut whole = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(review_pod(&ctx, &body).await);
            }
            whole.push(per_round(started));
        }
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(parse::<Pod>(&body).is_ok());
        }
        let parse_us = per_round(started);
        whole.sort_by(f64::total_cmp);
        println!("review_cost: {:.2} us per review (best of 3 x {rounds}), of which parsing {parse_us:.2} us", whole[0]);
    }
}
