//! The security reviews' findings that concern vault-env itself,
//! each shown fixed against real processes: redirects, error texts, `VAULT_ENV_FROM_PATH` names,
//! and what the app can read of vault-env in daemon mode.

use crate::common::*;

/// Two stand-ins: `allowed` (VAULT_ADDR) redirects elsewhere to `target`, which logs everything.
struct Redirects {
    _procs: [Proc; 2],
    dir: tempfile::TempDir,
    allowed: String,
}

impl Redirects {
    fn start() -> Redirects {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| dir.path().join(name).display().to_string();
        let (target, target_port) = python_fixture("redirector.py", &[&file("target.port"), &file("target.log")], &dir.path().join("target.port"));
        let target_url = format!("http://localhost:{target_port}");
        let (allowed, port) =
            python_fixture("redirector.py", &[&file("allowed.port"), &file("allowed.log"), &target_url], &dir.path().join("allowed.port"));
        Redirects { _procs: [allowed, target], allowed: format!("http://127.0.0.1:{port}"), dir }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// A 307 to another host took `X-Vault-Token` (and login bodies) with it; now only a 307 on
/// the same origin is followed, as Vault's own client does for standby nodes.
#[test]
fn the_token_never_follows_a_redirect_to_another_origin() {
    let r = Redirects::start();
    let env = |reference: &'static str| -> Vec<(&str, String)> {
        vec![
            ("VAULT_ADDR", r.allowed.clone()),
            ("VAULT_TOKEN", "TOKCANARY_q8w7e6r5".into()),
            ("PW", reference.into()),
            ("VAULT_MAX_RETRIES", "0".into()),
        ]
    };
    let run = |reference: &'static str| {
        let env = env(reference);
        vault_env(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(), &["sh", "-c", "echo \"PW=$PW\""])
    };
    let out = run("vault:secret/data/app#password");
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("307"), "the redirect is reported: {}", out.stderr);
    assert!(!out.stdout.contains("from-"), "{}", out.stdout);
    assert_eq!(r.log("target.log"), "", "nothing reached the other origin");
    // A login body does not follow either.
    let login = vault_env(
        &[
            ("VAULT_ADDR", &r.allowed),
            ("VAULT_AUTH_METHOD", "approle"),
            ("VAULT_ROLE_ID", "r"),
            ("VAULT_SECRET_ID", "SIDCANARY"),
            ("PW", "vault:secret/data/app#password"),
        ],
        &["true"],
    );
    assert_ne!(login.code, Some(0), "{}", login.all());
    assert_eq!(r.log("target.log"), "", "nothing reached the other origin");
    // A 307 on the same origin (a path change) is followed once.
    let same = run("vault:same/app#password");
    assert_eq!((same.code, same.stdout.trim()), (Some(0), "PW=from-final"), "{}", same.all());
    // VAULT_DISABLE_REDIRECTS (as Vault's client reads it): not even that one.
    let mut env = env("vault:same/app#password");
    env.push(("VAULT_DISABLE_REDIRECTS", "true".into()));
    let none = vault_env(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(), &["sh", "-c", "echo \"PW=$PW\""]);
    assert_ne!(none.code, Some(0), "{}", none.all());
    assert!(none.stderr.contains("307"), "{}", none.stderr);
}

/// Vault's error text for a write quoted the body (`invalid duration "BODYCANARY"`); write
/// errors now give the status only. Reads keep Vault's text (it names no value of ours).
#[test]
fn write_errors_do_not_echo_the_body() {
    let bao = Bao::dev();
    let out = vault_env(
        &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", "root"), ("T", r#">>vault:auth/token/create#client_token#{"ttl":"BODYCANARY_s3cr3t"}"#)],
        &["true"],
    );
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("(400)"), "{}", out.stderr);
    assert!(!out.all().contains("BODYCANARY"), "{}", out.all());
}

/// In daemon mode the app (same uid) read vault-env's token from `/proc/PPID/environ` and
/// `/proc/PPID/mem`, and a core file of vault-env held tokens and secrets. Run as a non-root app
/// would: vault-env and the app as uid 65534.
#[test]
fn the_app_cannot_read_vault_envs_memory_or_environment() {
    let bao = Bao::dev();
    bao.kv2("app", serde_json::json!({"password": "CANARYPW_7a1b"}));
    bao.policy("app", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    let token = bao.token(&["app"], "1h");
    let app = r#"
        cat /proc/$PPID/environ >/dev/null 2>&1 && echo ENVIRON-READABLE
        (exec 3</proc/$PPID/mem) 2>/dev/null && echo MEM-OPENABLE
        grep -q "^Max core file size *0 " /proc/$PPID/limits && echo PARENT-CORE-0
        echo "app-core=$(ulimit -c) pw=$PW""#;
    let script = format!(
        "ulimit -c unlimited; exec setpriv --reuid=65534 --regid=65534 --clear-groups {} sh -c '{}'",
        vault_env_bin().display(),
        app.replace('\'', "'\\''")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", &token)
        .env("VAULT_ENV_DAEMON", "true")
        .env("PW", "vault:secret/data/app#password")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("ENVIRON-READABLE") && !stdout.contains("MEM-OPENABLE"), "{stdout}");
    assert!(stdout.contains("PARENT-CORE-0"), "vault-env writes no core file: {stdout}");
    assert!(stdout.contains("app-core=unlimited pw=CANARYPW_7a1b"), "the app keeps its own limit and gets its secret: {stdout}");
}

/// Whoever could write the `VAULT_ENV_FROM_PATH` secret set `BASH_ENV` (or `LD_PRELOAD`,
/// `NODE_OPTIONS`, …) and ran code in the app. Such keys, and keys that are not variable names,
/// are refused by name; the pod may still set them itself.
#[test]
fn from_path_refuses_loader_and_interpreter_variables() {
    let bao = Bao::dev();
    let env =
        |path: &'static str| vec![("VAULT_ADDR", bao.addr.clone()), ("VAULT_TOKEN", "root".to_string()), ("VAULT_ENV_FROM_PATH", path.to_string())];
    let run = |path: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut env = env(path);
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        vault_env(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(), &["bash", "-c", "echo \"GREETING=$GREETING\""])
    };
    bao.kv2("evil", serde_json::json!({"GREETING": "hi", "BASH_ENV": "$(echo INJECTED-CODE-RAN >&2)"}));
    let out = run("secret/data/evil", &[]);
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("key \"BASH_ENV\" is refused"), "{}", out.stderr);
    assert!(!out.all().contains("INJECTED"), "{}", out.all());
    // The second review's reproductions: credentials through a proxy, code through git's
    // core.fsmonitor, and the other runtimes' hooks and trust stores; any case.
    for key in [
        "LD_PRELOAD",
        "NODE_OPTIONS",
        "PYTHONPATH",
        "JAVA_TOOL_OPTIONS",
        "PERL5OPT",
        "http_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "NO_PROXY",
        "GIT_CONFIG_COUNT",
        "GIT_CONFIG_KEY_0",
        "git_config_value_0",
        "DOTNET_STARTUP_HOOKS",
        "OPENSSL_CONF",
        "SSL_CERT_FILE",
        "SSLKEYLOGFILE",
        "CORECLR_PROFILER_PATH",
        "LUA_INIT_5_4",
        "PHPRC",
        "HOME",
        "XDG_CONFIG_HOME",
    ] {
        bao.kv2("one", serde_json::json!({key: "x"}));
        let out = run("secret/data/one", &[]);
        assert!(out.stderr.contains(&format!("key \"{key}\" is refused")), "{key}: {}", out.stderr);
    }
    bao.kv2("names", serde_json::json!({"spring.datasource.password": "x"}));
    let out = run("secret/data/names", &[]);
    assert!(out.stderr.contains("key \"spring.datasource.password\" is not a valid environment variable name"), "{}", out.stderr);
    bao.kv2("fine", serde_json::json!({"GREETING": "hi", "_UNDER": "u"}));
    let out = run("secret/data/fine", &[("BASH_ENV", "")]);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "GREETING=hi"), "{}", out.all());
}

/// A duration near u64::MAX seconds overflowed when added to the clock (exit 101, a panic);
/// it is now a setting error naming the variable.
#[test]
fn huge_durations_are_setting_errors_not_panics() {
    for var in ["VAULT_CLIENT_TIMEOUT", "VAULT_ENV_STOP_TIMEOUT"] {
        let out = vault_env(
            &[("VAULT_ADDR", "http://127.0.0.1:9"), ("VAULT_TOKEN", "t"), ("VAULT_ENV_DAEMON", "true"), (var, "18446744073709551615")],
            &["true"],
        );
        assert_eq!(out.code, Some(64), "{var}: {}", out.all());
        assert!(out.stderr.contains(&format!("{var}=\"18446744073709551615\" is not valid")), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

/// The second line of defence below the webhook's reference checks: a client limited to secrets
/// refuses every spelling that reaches `auth/`, `sys/` or another non-secret surface, whatever
/// a parser above it let through. Each spelling is first shown to reach the token endpoint with
/// an unrestricted client against real OpenBao (the URL parser removes dot segments, OpenBao
/// decodes `%61`, follows its own 307 for `//`, and splits a namespace off the front).
#[test]
fn a_secrets_only_client_refuses_every_spelling_of_auth_and_sys() {
    use vault_env::client::{Client, ClientError};
    use vault_env::config::{Config, Env};
    let bao = Bao::dev();
    bao.kv2("app", serde_json::json!({"password": "pw"}));
    bao.policy("reader", r#"path "secret/data/app" { capabilities = ["read"] }"#);
    bao.api("POST", "sys/namespaces/ns1", Some(serde_json::json!({})));
    let token = bao.token(&["reader"], "1h");
    let client = |namespace: Option<&str>| {
        let mut vars = vec![("VAULT_ADDR", bao.addr.as_str()), ("VAULT_MAX_RETRIES", "0"), ("VAULT_CLIENT_TIMEOUT", "5s")];
        vars.extend(namespace.map(|ns| ("VAULT_NAMESPACE", ns)));
        let env: Env = vars.into_iter().collect();
        Client::new(&Config::from_env(&env).unwrap()).unwrap().with_token(vault_env::SecretString::new(token.clone()))
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let id_of = |result: Result<Option<vault_env::client::Secret>, ClientError>| {
        result.map(|s| s.and_then(|s| s.data).map(|d| d["id"].as_str().unwrap_or_default().to_string()).unwrap_or_default())
    };
    let reads = [
        (None, "auth/token/lookup-self"),
        (None, "secret/../auth/token/lookup-self"),
        (None, "%61uth/token/lookup-self"),
        (None, "./auth/token/lookup-self"),
        (None, "secret/%2e%2e/auth/token/lookup-self"),
        (None, "ns1/auth/token/lookup-self"),
        (None, "auth//token/lookup-self"),
        (None, "secret\\..\\auth/token/lookup-self"),
        (Some("ns1"), "auth/token/lookup-self"),
    ];
    for (namespace, path) in reads {
        let open = runtime.block_on(client(namespace).read(path, None));
        assert_eq!(id_of(open).ok().as_deref(), Some(token.as_str()), "{namespace:?} {path}: the spelling should reach lookup-self");
        let refused = runtime.block_on(client(namespace).secrets_only().read(path, None));
        assert!(matches!(refused, Err(ClientError::Refused { .. })), "{namespace:?} {path}: {:?}", id_of(refused));
    }
    // Refused all the same: a namespace that ends in auth (OpenBao answers no route today).
    let refused = runtime.block_on(client(Some("ns1/auth")).secrets_only().read("token/lookup-self", None));
    assert!(matches!(refused, Err(ClientError::Refused { .. })), "{:?}", id_of(refused));
    for path in ["secret/../auth/token/create", "ns1/auth/token/create", "%73ys/policies/acl/x"] {
        let refused = runtime.block_on(client(None).secrets_only().write(path, &serde_json::json!({})));
        assert!(matches!(refused, Err(ClientError::Refused { .. })), "{path}");
    }
    let secret = runtime.block_on(client(None).secrets_only().read("secret/data/app", None)).unwrap().unwrap();
    assert_eq!(secret.data.unwrap()["data"]["password"], "pw");
}
