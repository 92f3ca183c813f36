//! The `vault-secrets-webhook` binary: settings → logging → certificate → HTTPS server.

use std::process::ExitCode;

/// The webhook allocates per request (JSON in, patch out) on several threads: mimalloc beats
/// glibc's malloc there, and musl's (the static image's) by far.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;
use vault_env_webhook::admit::Context;
use vault_env_webhook::http::{self, CertStore};
use vault_env_webhook::settings::Settings;

const HELP: &str = "\
vault-secrets-webhook: Kubernetes mutating admission webhook that runs containers through vault-env
(a drop-in for Bank-Vaults' vault-secrets-webhook). Configured through the environment.

Usage: vault-secrets-webhook [--help | --version]

Endpoints: POST /pods, /secrets, /configmaps, /objects (AdmissionReview v1 or v1beta1),
           GET /healthz, GET /metrics

Server:
  TLS_CERT_FILE, TLS_PRIVATE_KEY_FILE  PEM certificate and key (required: HTTPS only); re-read
                                       when they change (every TLS_RELOAD_INTERVAL [default: 5s])
  LISTEN_ADDRESS                       [default: :8443]
  TELEMETRY_LISTEN_ADDRESS             also serve /metrics there, over plain HTTP
  LOG_LEVEL                            the webhook's log level [default: info]
  ENABLE_JSON_LOG                      JSON logs; also the default of VAULT_JSON_LOG in pods
  KUBECONFIG                           Kubernetes API access outside a cluster (else in-cluster);
                                       the API is only contacted when a pod needs a read

Defaults for pods (each overridable by a vault.security.banzaicloud.io/ annotation):
  VAULT_ADDR [https://vault:8200], VAULT_SKIP_VERIFY, VAULT_ROLE [the pod's ServiceAccount],
  VAULT_PATH [kubernetes], VAULT_AUTH_METHOD [jwt], VAULT_TLS_SECRET, VAULT_CLIENT_TIMEOUT [10s],
  VAULT_NAMESPACE, VAULT_ENV_DAEMON, VAULT_ENV_DELAY, VAULT_IGNORE_MISSING_SECRETS,
  VAULT_ENV_PASSTHROUGH, VAULT_LOG_LEVEL [info], TRANSIT_KEY_ID, TRANSIT_PATH,
  TRANSIT_BATCH_SIZE [25], RUN_AS_NON_ROOT, RUN_AS_USER, RUN_AS_GROUP, READONLY_ROOT_FS,
  PSP_ALLOW_PRIVILEGE_ESCALATION

The copy-vault-env init container:
  VAULT_ENV_IMAGE [ghcr.io/vault-env/vault-env:0.1.0], VAULT_ENV_PULL_POLICY [IfNotPresent],
  VAULT_ENV_CPU_REQUEST [100m], VAULT_ENV_MEMORY_REQUEST [256Mi], VAULT_ENV_CPU_LIMIT [500m],
  VAULT_ENV_MEMORY_LIMIT [256Mi]

Image ENTRYPOINT/CMD lookup (containers without command):
  REGISTRY_SKIP_VERIFY                 accept any registry certificate [default: false]
  DEFAULT_IMAGE_PULL_SECRET, DEFAULT_IMAGE_PULL_SECRET_NAMESPACE,
  DEFAULT_IMAGE_PULL_SECRET_SERVICE_ACCOUNT
                                       credentials for pods without imagePullSecrets
  REGISTRY_DEFAULT_PLATFORM            platform picked from multi-arch images when the pod's
                                       nodeSelector does not say [default: linux/amd64]
  REGISTRY_CACHE_SIZE [1024], REGISTRY_CACHE_TTL [1h], REGISTRY_TIMEOUT [5s]
  REGISTRY_CREDENTIALS_TTL             how long pull secrets read for a pod are reused [10s]
  HTTPS_PROXY, NO_PROXY                registry (and ECR API) connections go through the proxy
  Private ECR registries (ACCOUNT.dkr.ecr.REGION.amazonaws.com) without a pull secret: a token
  from ecr:GetAuthorizationToken, kept until it expires. AWS credentials, first set wins:
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
    AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN [AWS_ROLE_SESSION_NAME, AWS_REGION]   (IRSA)
    AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI,
      AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]                                    (Pod Identity)
    the instance role: AWS_EC2_METADATA_SERVICE_ENDPOINT [http://169.254.169.254],
      off with AWS_EC2_METADATA_DISABLED=true
  AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL    API endpoints [AWS's]

Secrets, ConfigMaps, custom objects (the webhook reads Vault itself; same annotations as pods):
  VAULT_ADDR, VAULT_ROLE [default], VAULT_PATH, VAULT_AUTH_METHOD, VAULT_NAMESPACE, VAULT_TLS_SECRET
                                       (ca.crt of that Secret in KUBERNETES_NAMESPACE), and the
                                       other VAULT_* variables as vault-env reads them
  VAULT_TOKEN_FILE, VAULT_TOKEN        a token to use as is; else a login with the webhook's
                                       service-account JWT (KUBERNETES_SERVICE_ACCOUNT_TOKEN)
  VAULT_SERVICEACCOUNT                 default of the vault-serviceaccount annotation: log in as
                                       that ServiceAccount of the object's namespace
  VAULT_ADDR_ALLOWLIST                 other addresses a vault-addr annotation may name
  VAULT_ALLOW_PRIVATE_ADDR             allow loopback/private IPs there [default: false]
  VAULT_ALLOW_OBJECT_SKIP_VERIFY       honour vault-skip-verify annotations [default: false]
  One token per address/role/mount/identity is reused until 2/3 of its TTL; tokens the webhook
  obtained are revoked when it stops.";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("-h" | "--help") => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("vault-secrets-webhook {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("vault-secrets-webhook: unexpected argument {other:?} (it is configured through the environment; see --help)");
            return ExitCode::from(64);
        }
        None => {}
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = match Settings::from_process() {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("vault-secrets-webhook: bad settings:");
            for e in errors {
                eprintln!("  {e}");
            }
            return ExitCode::from(64);
        }
    };
    init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vault-secrets-webhook: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vault-secrets-webhook: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("warn,vault_env_webhook={0},vault_secrets_webhook={0}", settings.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,vault_env_webhook=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if settings.json_log {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let store = CertStore::load(settings.tls_cert_file.as_ref(), settings.tls_key_file.as_ref())
        .map_err(|e| format!("cannot load the serving certificate: {e}"))?;
    store.clone().watch(settings.tls_reload_interval);
    let tls = http::tls_config(store)?;
    if settings.has_vault_token {
        tracing::warn!("VAULT_TOKEN is set on the webhook: it is NOT copied into pods (Bank-Vaults does, in clear text)");
    }
    let address = Settings::bind_address(&settings.listen_address);
    let listener = tokio::net::TcpListener::bind(&address).await.map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let telemetry = match &settings.telemetry_listen_address {
        Some(a) => {
            let a = Settings::bind_address(a);
            Some(tokio::net::TcpListener::bind(&a).await.map_err(|e| format!("cannot listen on {a}: {e}"))?)
        }
        None => None,
    };
    let ctx = Arc::new(Context::new(settings));
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or(address), "serving HTTPS");
    if let Some(t) = telemetry {
        let router = http::metrics_router(ctx.clone());
        tokio::spawn(http::serve(t, None, router, std::future::pending()));
    }
    http::serve(listener, Some(tls), http::router(ctx.clone()), shutdown_signal()).await;
    let revoked = ctx.vault.revoke_all().await;
    tracing::info!(revoked_vault_tokens = revoked, "stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
