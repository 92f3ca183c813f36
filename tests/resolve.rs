//! Every reference form against a real OpenBao: KV v1/v2, versions, templates, inline references,
//! non-KV engines, writes, transit batches, VAULT_ENV_FROM_PATH, VAULT_IGNORE_MISSING_SECRETS.

use crate::common::*;
use serde_json::json;

/// Runs vault-env with a root token and prints the given variables separated by `|`.
fn resolve(bao: &Bao, env: &[(&str, &str)], vars: &[&str]) -> Output {
    let mut full = vec![("VAULT_ADDR", bao.addr.as_str()), ("VAULT_TOKEN", ROOT_TOKEN)];
    full.extend_from_slice(env);
    let script = vars.iter().map(|v| format!("${{{v}-<unset>}}")).collect::<Vec<_>>().join("|");
    vault_env(&full, &["sh", "-c", &format!("printf '%s' \"{script}\"")])
}

fn ok(out: &Output) -> &str {
    assert_eq!(out.code, Some(0), "vault-env failed: {}", out.stderr);
    &out.stdout
}

#[test]
fn kv2_latest_versions_templates_and_inline() {
    let bao = Bao::dev();
    bao.kv2("account", json!({"username": "superusername", "password": "secret1"}));
    bao.kv2("account", json!({"username": "superusername", "password": "p@ss word/+"}));
    bao.kv2("aws", json!({"AWS_ACCESS_KEY_ID": "secretId"}));
    let out = resolve(
        &bao,
        &[
            ("LATEST", "vault:secret/data/account#password"),
            ("V1", "vault:secret/data/account#password#1"),
            ("VMINUS", "vault:secret/data/account#password#-1"),
            ("TEMPLATE", "vault:secret/data/aws#AWS key in base64: ${.AWS_ACCESS_KEY_ID | b64enc}"),
            ("TITLE", "vault:secret/data/account#${title .username}"),
            ("INLINE", "scheme://${vault:secret/data/account#username}:${vault:secret/data/account#${.password | urlquery}}@127.0.0.1:8080"),
            ("TRAILING_SLASH", "vault:secret/data/aws/#AWS_ACCESS_KEY_ID"),
            ("PLAIN", "not a ${reference} vault:"),
        ],
        &["LATEST", "V1", "VMINUS", "TEMPLATE", "TITLE", "INLINE", "TRAILING_SLASH", "PLAIN"],
    );
    assert_eq!(
        ok(&out),
        "p@ss word/+|secret1|p@ss word/+|AWS key in base64: c2VjcmV0SWQ=|Superusername|\
         scheme://superusername:p%40ss+word%2F%2B@127.0.0.1:8080|secretId|not a ${reference} vault:"
    );
}

#[test]
fn kv1_and_a_field_named_data() {
    let bao = Bao::dev();
    bao.mount("kv1", "kv", json!({"version": "1"}));
    bao.api("POST", "kv1/app", Some(json!({"password": "v1pass", "data": "not kv2", "port": 5432})));
    let out = resolve(&bao, &[("P", "vault:kv1/app#password"), ("D", "vault:kv1/app#data"), ("N", "vault:kv1/app#port")], &["P", "D", "N"]);
    assert_eq!(ok(&out), "v1pass|not kv2|5432");
}

#[test]
fn any_engine_reads_and_cached_writes() {
    let bao = Bao::dev();
    bao.mount("pki", "pki", json!({}));
    bao.api("POST", "sys/mounts/pki/tune", Some(json!({"max_lease_ttl": "87600h"})));
    bao.api("POST", "pki/root/generate/internal", Some(json!({"common_name": "test-ca", "ttl": "8760h"})));
    bao.api("POST", "pki/roles/svc", Some(json!({"allowed_domains": ["svc.local"], "allow_subdomains": true, "max_ttl": "72h"})));
    let count_certs = || bao.api("LIST", "pki/certs", None)["data"]["keys"].as_array().map_or(0, Vec::len);
    let before = count_certs();
    let body = r#"{"common_name":"app.svc.local","ttl":"1h"}"#;
    let cert_ref = format!(">>vault:pki/issue/svc#certificate#{body}");
    let serial_ref = format!(">>vault:pki/issue/svc#serial_number#{body}");
    let inline = format!("${{>>vault:pki/issue/svc#serial_number#{body}}}");
    let out = resolve(
        &bao,
        &[("CA", "vault:pki/cert/ca#certificate"), ("CERT", &cert_ref), ("SERIAL", &serial_ref), ("SERIAL2", &inline)],
        &["CA", "CERT", "SERIAL", "SERIAL2"],
    );
    let text = ok(&out);
    let parts: Vec<&str> = text.split('|').collect();
    assert!(parts[0].starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    assert!(parts[1].starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    assert_eq!(parts[2], parts[3], "the same write must be made once");
    assert_eq!(count_certs(), before + 1, "one certificate issued for three references");
    assert!(!out.stderr.contains("version"), "no ?version sent to a non-KV engine: {}", out.stderr);
}

#[test]
fn one_read_per_distinct_path() {
    let dir = tempfile::tempdir().unwrap();
    let bao = audited_bao(dir.path());
    bao.kv2("shared", json!({"a": "1", "b": "2"}));
    bao.kv2("other", json!({"c": "3"}));
    let out = resolve(
        &bao,
        &[
            ("A", "vault:secret/data/shared#a"),
            ("B", "vault:secret/data/shared#b"),
            ("AB", "${vault:secret/data/shared#a}${vault:secret/data/shared#b}"),
            ("C", "vault:secret/data/other#c"),
            ("C1", "vault:secret/data/other#c#1"),
        ],
        &["A", "B", "AB", "C", "C1"],
    );
    assert_eq!(ok(&out), "1|2|12|3|3");
    let log = audit_log(dir.path());
    let requests = |path: &str| {
        log.lines()
            .filter(|l| l.contains("\"type\":\"request\"") && l.contains("\"operation\":\"read\"") && l.contains(&format!("\"path\":\"{path}\"")))
            .count()
    };
    assert_eq!(requests("secret/data/shared"), 1, "shared path read once");
    assert_eq!(requests("secret/data/other"), 2, "latest and version 1 are two reads");
}

/// To a Vault on this host (here OpenBao on loopback) a fetch keeps four requests in flight, and
/// forty reads share the connections the first answers free: OpenBao's audit log records each
/// request's client port. With sixteen in flight they opened 8-17 connections. A connection goes
/// back to the pool a moment after its answer is read, so a request now and then opens a fifth.
#[test]
fn forty_reads_from_a_vault_on_this_host_share_four_connections() {
    let dir = tempfile::tempdir().unwrap();
    let bao = audited_bao(dir.path());
    assert!(bao.addr.starts_with("http://127.0.0.1:"), "{}", bao.addr);
    let names: Vec<String> = (0..40).map(|i| format!("S{i}")).collect();
    let refs: Vec<String> = (0..40).map(|i| format!("vault:secret/data/many/s{i}#v")).collect();
    for i in 0..40 {
        bao.kv2(&format!("many/s{i}"), json!({"v": i.to_string()}));
    }
    let env: Vec<(&str, &str)> = names.iter().map(String::as_str).zip(refs.iter().map(String::as_str)).collect();
    let out = resolve(&bao, &env, &names.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ok(&out), (0..40).map(|i| i.to_string()).collect::<Vec<_>>().join("|"));
    let log = audit_log(dir.path());
    let mut reads = 0;
    let mut ports = std::collections::BTreeSet::new();
    for line in log.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["type"] == "request"
            && e["request"]["operation"] == "read"
            && e["request"]["path"].as_str().is_some_and(|p| p.starts_with("secret/data/many/"))
        {
            reads += 1;
            ports.insert(e["request"]["remote_port"].as_u64().expect("OpenBao's audit log records the client's port"));
        }
    }
    assert_eq!(reads, 40, "one read per path");
    assert!((1..=6).contains(&ports.len()), "connections opened for 40 reads: {} ({ports:?})", ports.len());
}

#[test]
fn transit_batch_decrypt_with_and_without_batch_size() {
    let bao = Bao::dev();
    bao.mount("transit", "transit", json!({}));
    bao.api("POST", "transit/keys/app", Some(json!({})));
    use base64::Engine as _;
    let encrypt = |plain: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(plain);
        bao.api("POST", "transit/encrypt/app", Some(json!({"plaintext": b64})))["data"]["ciphertext"].as_str().unwrap().to_string()
    };
    let (c1, c2, c3) = (encrypt("first"), encrypt("second"), encrypt("third"));
    let inline = format!("x=${{{c3}}}");
    let vars = [("A", c1.as_str()), ("B", c2.as_str()), ("C", inline.as_str()), ("VAULT_TRANSIT_KEY_ID", "app")];
    // Unset batch size: Bank-Vaults panics (divide by zero); here it defaults to 25.
    assert_eq!(ok(&resolve(&bao, &vars, &["A", "B", "C"])), "first|second|x=third");
    let mut small = vars.to_vec();
    small.push(("VAULT_TRANSIT_BATCH_SIZE", "2"));
    assert_eq!(ok(&resolve(&bao, &small, &["A", "B", "C"])), "first|second|x=third");

    let bad = "vault:v1:bm90IGEgcmVhbCBjaXBoZXJ0ZXh0";
    let failing = [("A", c1.as_str()), ("BAD", bad), ("VAULT_TRANSIT_KEY_ID", "app")];
    let out = resolve(&bao, &failing, &["A", "BAD"]);
    assert_eq!(out.code, Some(65), "{}", out.stderr);
    assert!(out.stderr.contains("BAD: vault:v1:bm90IGEg…: transit decryption failed"), "{}", out.stderr);
    let mut ignoring = failing.to_vec();
    ignoring.push(("VAULT_IGNORE_MISSING_SECRETS", "true"));
    assert_eq!(ok(&resolve(&bao, &ignoring, &["A", "BAD"])), "first|<unset>");

    let encrypted = resolve(&bao, &[("E", r#">>vault:transit/encrypt/app#ciphertext#{"plaintext":"aGVsbG8="}"#)], &["E"]);
    assert!(ok(&encrypted).starts_with("vault:v1:"), "{}", encrypted.stdout);
}

#[test]
fn env_from_path_adds_every_key_and_pod_values_win() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"DB_USER": "app", "DB_PASS": "pw", "SHARED": "from-app"}));
    bao.kv2("versioned", json!({"V": "one", "SHARED": "from-versioned"}));
    bao.kv2("versioned", json!({"V": "two"}));
    let out = resolve(
        &bao,
        &[("VAULT_ENV_FROM_PATH", "secret/data/app, secret/data/versioned#1"), ("DB_PASS", "set on the pod")],
        &["DB_USER", "DB_PASS", "SHARED", "V", "VAULT_ENV_FROM_PATH"],
    );
    assert_eq!(ok(&out), "app|set on the pod|from-app|one|<unset>");
}

#[test]
fn ignore_missing_secrets_drops_variables() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"k": "v"}));
    let vars = [
        ("GOOD", "vault:secret/data/app#k"),
        ("NO_PATH", "vault:secret/data/nope#k"),
        ("NO_KEY", "vault:secret/data/app#missing"),
        ("NO_VERSION", "vault:secret/data/app#k#9"),
        ("INLINE", "u=${vault:secret/data/nope#k}"),
    ];
    let out = resolve(&bao, &vars, &["GOOD"]);
    assert_eq!(out.code, Some(65), "{}", out.stderr);
    for var in ["NO_PATH", "NO_KEY", "NO_VERSION", "INLINE"] {
        assert!(out.stderr.contains(&format!("vault-env: {var}: ")), "{var} not reported: {}", out.stderr);
    }
    assert!(out.stderr.contains("4 variable(s) could not be resolved"), "{}", out.stderr);

    let mut ignoring = vars.to_vec();
    ignoring.push(("VAULT_IGNORE_MISSING_SECRETS", "true"));
    let out = resolve(&bao, &ignoring, &["GOOD", "NO_PATH", "NO_KEY", "NO_VERSION", "INLINE"]);
    assert_eq!(ok(&out), "v|<unset>|<unset>|<unset>|<unset>");
}

#[test]
fn values_that_are_not_references_pass_through_byte_for_byte() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"k": "v"}));
    let tricky = "  vault-ish: ${HOME} $${vault} \\n \"quoted\" 'single' ünïcødé\ttab";
    let out = resolve(&bao, &[("REF", "vault:secret/data/app#k"), ("TRICKY", tricky), ("EMPTY", "")], &["REF", "TRICKY", "EMPTY"]);
    assert_eq!(ok(&out), format!("v|{tricky}|"));
}

/// A pod written for Bank-Vaults' successor (secret-init with its OpenBao provider) works
/// unchanged: `bao:` references, `BAO_*` settings, `SECRET_INIT_*` and `VAULT_FROM_PATH`; none of
/// those settings (the token above all) reaches the app.
#[test]
fn the_successors_names_for_openbao() {
    let bao = Bao::dev();
    bao.kv2("app", json!({"password": "from-bao"}));
    bao.kv2("bulk", json!({"GREETING": "hi"}));
    let out = vault_env(
        &[
            ("BAO_ADDR", bao.addr.as_str()),
            ("BAO_TOKEN", ROOT_TOKEN),
            ("SECRET_INIT_LOG_LEVEL", "warn"),
            ("VAULT_FROM_PATH", "secret/data/bulk"),
            ("P", "bao:secret/data/app#password"),
            ("Q", "x ${bao:secret/data/app#password} y"),
        ],
        &["sh", "-c", "printf '%s|%s|%s|' \"$P\" \"$Q\" \"$GREETING\"; env | grep -E '^(BAO_|VAULT_|SECRET_INIT_)' | wc -l"],
    );
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "from-bao|x from-bao y|hi|0"), "{}", out.all());
}

/// `VAULT_HEADERS` (a JSON object, as Vault's client reads it) reaches Vault with every request
/// (seen in OpenBao's audit log, which records the header once told to); `X-Vault-*` names are
/// refused, and the value is never printed. `VAULT_RATE_LIMIT=RATE[:BURST]` spaces the requests.
#[test]
fn extra_headers_and_a_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let bao = audited_bao(dir.path());
    for i in 0..5 {
        bao.kv2(&format!("r{i}"), json!({"k": i}));
    }
    bao.api("PUT", "sys/config/auditing/request-headers/x-proxy-auth", Some(json!({"hmac": false})));
    let headers = r#"{"X-Proxy-Auth": "HDRCANARY_1"}"#;
    let out = resolve(&bao, &[("VAULT_HEADERS", headers), ("A", "vault:secret/data/r0#k")], &["A"]);
    assert_eq!(ok(&out), "0");
    let audit = audit_log(dir.path());
    assert!(audit.contains("HDRCANARY_1"), "the header reached OpenBao: {audit}");
    let out = resolve(&bao, &[("VAULT_HEADERS", r#"{"X-Vault-Token": "HDRCANARY_2"}"#), ("A", "vault:secret/data/r0#k")], &["A"]);
    assert_eq!(out.code, Some(64), "{}", out.all());
    assert!(out.stderr.contains("VAULT_HEADERS") && !out.all().contains("HDRCANARY_2"), "{}", out.all());

    // 5 reads at 4 a second with a burst of 1: at least a second between the first and the last.
    let vars: Vec<(String, String)> = (0..5).map(|i| (format!("V{i}"), format!("vault:secret/data/r{i}#k"))).collect();
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("VAULT_RATE_LIMIT", "4:1"));
    let started = std::time::Instant::now();
    let out = resolve(&bao, &env, &["V0", "V4"]);
    assert_eq!(ok(&out), "0|4");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1000), "{:?}", started.elapsed());
}
