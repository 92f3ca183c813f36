//! The `vault-secrets-webhook` binary: settings → logging → certificate → HTTPS server → revoke
//! the Vault tokens it obtained. Exit codes: 0, 64 (usage or settings: every bad variable named),
//! 70 (internal: the runtime or signal handling could not start), 1 (cannot serve).

use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};
use vault_env::cli::print;
use vault_env::config::Env;
use vault_env_webhook::admit::Context;
use vault_env_webhook::http::{self, CertStore};
use vault_env_webhook::settings::{HELP, Settings};

/// The webhook allocates per request (JSON in, patch out) on several threads: mimalloc beats
/// glibc's malloc there, and musl's (the static image's) by far.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_USAGE: u8 = 64;
const EXIT_INTERNAL: u8 = 70;

/// Why the webhook stopped early.
enum Failure {
    Internal(String),
    Serve(String),
}

fn main() -> ExitCode {
    // No transparent huge pages: with them each first touch of a 2 MiB region of the heap makes
    // all of it resident (22-24 MiB under load instead of 11-15 here, for no throughput). mimalloc
    // is built not to ask for them (its `no_thp` feature); this keeps a kernel set to `always`
    // from giving them anyway. A kernel without the flag changes nothing.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let env = Env::from_process();
    match std::env::args_os().nth(1).as_deref().map(|a| a.to_string_lossy()) {
        Some(a) if a == "-h" || a == "--help" => return ExitCode::from(print(&format!("{HELP}\n"))),
        Some(a) if a == "-V" || a == "--version" => return ExitCode::from(print(&format!("vault-secrets-webhook {}\n", env!("CARGO_PKG_VERSION")))),
        Some(other) => {
            say(&format!("unexpected argument {other:?} (it is configured through the environment; see --help)"));
            return ExitCode::from(EXIT_USAGE);
        }
        None => {}
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = match Settings::from_env(&env) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                say(&e.to_string());
            }
            say("invalid settings; not started (see --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    drop(env);
    init_logging(&settings);
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(settings)),
        Err(e) => Err(Failure::Internal(format!("cannot start the async runtime: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Internal(e)) => {
            say(&format!("internal error: {e}"));
            ExitCode::from(EXIT_INTERNAL)
        }
        Err(Failure::Serve(e)) => {
            say(&e);
            ExitCode::FAILURE
        }
    }
}

/// `vault-secrets-webhook: TEXT` on stderr. Not `eprintln!`, which panics when stderr is a closed
/// pipe (exit 101 instead of the exit code that says what failed).
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "vault-secrets-webhook: {text}");
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("warn,vault_env_webhook={0},vault_secrets_webhook={0}", settings.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,vault_env_webhook=info"));
    // A line that cannot be written (stderr a closed pipe) is dropped, not reported with
    // `eprintln!`, which panics there and would end the webhook or the request it was serving.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).log_internal_errors(false);
    if settings.json_log {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(settings: Settings) -> Result<(), Failure> {
    // Set up first: without them SIGTERM would kill the webhook with no drain and no revocation.
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    let (Ok(term), Ok(int)) = signals else {
        return Err(Failure::Internal("cannot set up SIGTERM/SIGINT handling".into()));
    };
    let server = &settings.server;
    let store = CertStore::load(server.tls_cert_file.as_ref(), server.tls_key_file.as_ref())
        .map_err(|e| Failure::Serve(format!("cannot load the serving certificate: {e}")))?;
    store.clone().watch(server.tls_reload_interval);
    let client_ca = server.client_ca_file.as_deref().map(std::path::Path::new);
    let tls = http::tls_config(store, client_ca).map_err(|e| Failure::Serve(format!("TLS_CLIENT_CA_FILE: {e}")))?;
    match (&server.client_ca_file, settings.unverified_impersonation) {
        (Some(ca), _) => tracing::info!(
            %ca,
            names = %server.client_names.0.join(","),
            "admission requests need a client certificate signed by TLS_CLIENT_CA_FILE and naming one of TLS_CLIENT_ALLOWED_NAMES"
        ),
        (None, true) => tracing::warn!(
            "VAULT_SERVICEACCOUNT_ALLOW_UNVERIFIED_CALLERS: anyone who can reach this port can have the webhook log in to Vault as any ServiceAccount (set TLS_CLIENT_CA_FILE)"
        ),
        (None, false) => {
            tracing::warn!(
                "TLS_CLIENT_CA_FILE is not set: callers cannot be verified, so Secrets, ConfigMaps and objects get no values unless VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS=true"
            )
        }
    }
    if settings.has_vault_token {
        tracing::warn!("VAULT_TOKEN is set on the webhook: it is NOT copied into pods (Bank-Vaults does, in clear text)");
    }
    let address = http::bind_address(&server.listen_address);
    let listener = tokio::net::TcpListener::bind(&address).await.map_err(|e| Failure::Serve(format!("cannot listen on {address}: {e}")))?;
    let telemetry = match &server.telemetry_listen_address {
        Some(a) => {
            let a = http::bind_address(a);
            Some(tokio::net::TcpListener::bind(&a).await.map_err(|e| Failure::Serve(format!("cannot listen on {a}: {e}")))?)
        }
        None => None,
    };
    let ctx = Arc::new(Context::new(settings.pods, settings.objects, &settings.registry, settings.vault));
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or(address), "serving HTTPS");
    if let Some(t) = telemetry {
        let router = http::metrics_router(ctx.clone());
        tokio::spawn(http::serve(t, None, router, server.limits, std::future::pending()));
    }
    let require_client_cert = server.client_ca_file.is_some();
    let router = http::router(ctx.clone(), &server.limits, require_client_cert);
    let tls = http::Tls { config: tls, callers: Arc::new(server.client_names.clone()), require_client_cert };
    http::serve(listener, Some(tls), router, server.limits, shutdown(term, int)).await;
    let revoked = ctx.vault.revoke_all().await;
    tracing::info!(revoked_vault_tokens = revoked, "stopped");
    Ok(())
}

async fn shutdown(mut term: Signal, mut int: Signal) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
}
