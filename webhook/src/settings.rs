//! The webhook's own environment, read once at start-up with Bank-Vaults' names and defaults, into
//! the settings type each layer owns (linkerd2-proxy's way): [`ServerSettings`] for the HTTPS edge,
//! [`PodDefaults`] and [`ObjectDefaults`] for the annotations, [`RegistrySettings`] (with ECR's) for
//! image lookups, [`VaultSettings`] for the webhook's own Vault client. Only `main.rs` imports this
//! module. Every bad variable is reported at once, by the core's one reader.

use crate::annotations::agent::AgentDefaults;
use crate::annotations::object::{EXPECTED_LOGINS, LoginRule, SERVICE_ACCOUNT_NEEDS_CLIENT_AUTH};
use crate::annotations::pod::{
    EXPECTED_LOG_LEVEL, EXPECTED_MEDIUM, EXPECTED_PULL_POLICY, Resources, is_quantity, log_level, pull_policy, volume_medium,
};
use crate::annotations::vault::{EXPECTED_KUBE_NAME, kube_name};
use crate::annotations::vault_addr::AddrPolicy;
use crate::annotations::{ObjectDefaults, PodDefaults, VaultDefaults};
use crate::fetch::registry::acr::{self, AadSource, AcrSettings};
use crate::fetch::registry::ecr::credentials::AWS_ENDPOINT_URL;
use crate::fetch::registry::ecr::{CredentialSource, EcrSettings};
use crate::fetch::registry::gcr::{GOOGLE_APPLICATION_CREDENTIALS, GcpSettings};
use crate::fetch::registry::pull_secrets::{DockerAuth, parse_pull_secret};
use crate::fetch::registry::{DefaultPullSecret, Platform, RegistrySettings, parse_mirrors};
use crate::fetch::vault::VaultSettings;
use crate::http::{AllowedNames, Limits, ServerSettings};
use std::time::Duration;
use vault_env::SecretString;
use vault_env::client::path::canonical;
use vault_env::cloud::azure::{self, Imds};
use vault_env::cloud::gcp::{self, GcpEndpoints};
use vault_env::config::reader::{EXPECTED_BOOL, FieldError, Reader};
use vault_env::config::{self as core, Config, Env, parse_bool, parse_duration};

// The webhook's own variables; the `VAULT_*` ones it shares with vault-env are the core's constants.
vault_env::names! {
    /// Every variable declared here (the `--help` tests check that each is described, with [`OTHERS`]).
    ALL;
    TLS_CERT_FILE,
    TLS_PRIVATE_KEY_FILE,
    TLS_RELOAD_INTERVAL,
    TLS_CLIENT_CA_FILE,
    TLS_CLIENT_ALLOWED_NAMES,
    VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS,
    VAULT_OBJECT_LOGINS,
    VAULT_OBJECT_PATHS,
    /// The successor's provider setting: `vault` or `bao` (OpenBao), both served the same way.
    PROVIDER,
    REQUEST_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_CONCURRENT_REQUESTS,
    HEADER_READ_TIMEOUT,
    IDLE_TIMEOUT,
    LISTEN_ADDRESS,
    TELEMETRY_LISTEN_ADDRESS,
    LOG_LEVEL,
    ENABLE_JSON_LOG,
    VAULT_TLS_SECRET,
    TRANSIT_KEY_ID,
    TRANSIT_PATH,
    TRANSIT_BATCH_SIZE,
    RUN_AS_NON_ROOT,
    RUN_AS_USER,
    RUN_AS_GROUP,
    READONLY_ROOT_FS,
    PSP_ALLOW_PRIVILEGE_ESCALATION,
    VAULT_ENV_IMAGE,
    VAULT_ENV_PULL_POLICY,
    VAULT_ENV_CPU_REQUEST,
    VAULT_ENV_MEMORY_REQUEST,
    VAULT_ENV_CPU_LIMIT,
    VAULT_ENV_MEMORY_LIMIT,
    VAULT_ENV_VOLUME_MEDIUM,
    REGISTRY_SKIP_VERIFY,
    DEFAULT_IMAGE_PULL_SECRET,
    DEFAULT_IMAGE_PULL_SECRET_NAMESPACE,
    DEFAULT_IMAGE_PULL_SECRET_SERVICE_ACCOUNT,
    REGISTRY_DEFAULT_PLATFORM,
    REGISTRY_CACHE_SIZE,
    REGISTRY_CACHE_TTL,
    REGISTRY_TIMEOUT,
    REGISTRY_CREDENTIALS_TTL,
    REGISTRY_CLOUD_IDENTITY,
    REGISTRY_MIRRORS,
    DOCKER_CONFIG,
    AWS_ENDPOINT_URL_ECR,
    AWS_ENDPOINT_URL_ECR_PUBLIC,
    VAULT_SERVICEACCOUNT,
    VAULT_SERVICEACCOUNT_ALLOW_UNVERIFIED_CALLERS,
    VAULT_ADDR_ALLOWLIST,
    VAULT_ALLOW_PRIVATE_ADDR,
    VAULT_ALLOW_OBJECT_SKIP_VERIFY,
    KUBERNETES_NAMESPACE,
    VAULT_AGENT,
    VAULT_IMAGE,
    VAULT_IMAGE_PULL_POLICY,
    SERVICE_ACCOUNT_TOKEN_VOLUME_NAME,
    VAULT_CT_IMAGE,
    VAULT_CT_PULL_POLICY,
}

/// The variables of other modules the webhook reads, for the `--help` test.
pub const OTHERS: [&str; 11] = [
    AWS_ENDPOINT_URL,
    GOOGLE_APPLICATION_CREDENTIALS,
    gcp::GCE_METADATA_HOST,
    acr::AZURE_TENANT_ID,
    azure::AZURE_CLIENT_ID,
    acr::AZURE_CLIENT_SECRET,
    acr::AZURE_FEDERATED_TOKEN_FILE,
    azure::AZURE_POD_IDENTITY_AUTHORITY_HOST,
    acr::AZURE_AUTHORITY_HOST,
    core::VAULT_TOKEN_FILE,
    core::VAULT_ENV_PASSTHROUGH,
];

/// `--help`: every variable the webhook reads.
pub const HELP: &str = "\
vault-secrets-webhook: Kubernetes mutating admission webhook that runs containers through vault-env
(a drop-in for Bank-Vaults' vault-secrets-webhook). Configured through the environment.

Usage: vault-secrets-webhook [--help | --version]

Endpoints: POST /pods, /secrets, /configmaps, /objects (AdmissionReview v1 or v1beta1),
           GET /healthz, GET /metrics

Server:
  TLS_CERT_FILE, TLS_PRIVATE_KEY_FILE  PEM certificate and key (required: HTTPS only); re-read
                                       when they change (every TLS_RELOAD_INTERVAL [default: 5s])
  LISTEN_ADDRESS                       [default: :8443]
  TLS_CLIENT_CA_FILE                   PEM CA(s): /pods, /secrets, /configmaps and /objects answer
                                       only callers with a client certificate it signed (the API
                                       server's, from its AdmissionConfiguration kubeConfigFile);
                                       /healthz and /metrics stay open [default: none: callers
                                       are not verified, and get no secret values (see
                                       VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS)]
  TLS_CLIENT_ALLOWED_NAMES             and only if that certificate's common name or a DNS name in
                                       it is one of these (comma-separated; * for any certificate
                                       the CA signed) [default: kube-apiserver,
                                       kube-apiserver-kubelet-client]
  REQUEST_TIMEOUT                      a whole admission request, body included; set it just above
                                       the webhook configuration's timeoutSeconds [default: 12s]
  MAX_CONNECTIONS                      connections served at once (more wait) [default: 256]; with
                                       TLS_CLIENT_CA_FILE, callers without an allowed certificate
                                       get an eighth of them and 5 s of idle time
  MAX_CONCURRENT_REQUESTS              admission requests processed at once, each body buffered
                                       up to 4 MiB [default: 16]
  HEADER_READ_TIMEOUT                  TLS handshake and request headers [default: 10s]
  IDLE_TIMEOUT                         connections without a request for this long are closed
                                       [default: 90s] (also fixed: 32 HTTP/2 streams per
                                       connection, bodies up to 4 MiB)
  TELEMETRY_LISTEN_ADDRESS             also serve /metrics there, over plain HTTP
  PROVIDER                             Bank-Vaults' successor's provider: vault or bao (OpenBao;
                                       the same protocol) [default: vault]; its bao-* annotations,
                                       bao: references and BAO_* variables are read as vault ones
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

vault-agent and consul-template with the pod's own configuration (vault-agent-configmap,
vault-ct-configmap annotations):
  VAULT_AGENT                          default of the vault-agent annotation: an init agent that
                                       logs in for vault-env [default: false]
  VAULT_IMAGE [hashicorp/vault:1.20.4], VAULT_IMAGE_PULL_POLICY [IfNotPresent]
                                       the agent, and the init agent that logs in for
                                       consul-template
  SERVICE_ACCOUNT_TOKEN_VOLUME_NAME    mount path of the token the agent logs in with
                                       [default: /var/run/secrets/kubernetes.io/serviceaccount]
  VAULT_CT_IMAGE [hashicorp/consul-template:0.41.1], VAULT_CT_PULL_POLICY [IfNotPresent]

The copy-vault-env init container:
  VAULT_ENV_IMAGE [ghcr.io/vault-env/vault-env:0.1.0], VAULT_ENV_PULL_POLICY [IfNotPresent],
  VAULT_ENV_CPU_REQUEST [100m], VAULT_ENV_MEMORY_REQUEST [256Mi], VAULT_ENV_CPU_LIMIT [500m],
  VAULT_ENV_MEMORY_LIMIT [256Mi]
  VAULT_ENV_VOLUME_MEDIUM              the vault-env volume on Memory (counted against the pod's
                                       memory: about 3 MB) or Disk [default: Memory]; annotation
                                       vault-env-volume-medium

Image ENTRYPOINT/CMD lookup (containers without command):
  REGISTRY_SKIP_VERIFY                 accept any registry certificate [default: false]
  DEFAULT_IMAGE_PULL_SECRET, DEFAULT_IMAGE_PULL_SECRET_NAMESPACE,
  DEFAULT_IMAGE_PULL_SECRET_SERVICE_ACCOUNT
                                       credentials for pods without imagePullSecrets
  REGISTRY_DEFAULT_PLATFORM            platform picked from multi-arch images when the pod's
                                       nodeSelector does not say [default: linux/amd64]
  REGISTRY_CACHE_SIZE [1024], REGISTRY_CACHE_TTL [1h], REGISTRY_TIMEOUT [5s]
  REGISTRY_CREDENTIALS_TTL             how long pull secrets read for a pod are reused
                                       [default: 10s]
  REGISTRY_MIRRORS                     registry=mirror pairs, comma-separated
                                       (docker.io=mirror.local:5000): images of that registry are
                                       looked up on the mirror (air-gapped clusters; the pod's
                                       image is not changed) [default: none]
  DOCKER_CONFIG                        the webhook's own docker config (DIR/config.json, else
                                       $HOME/.docker/config.json): its credentials are tried after
                                       the pod's pull secrets
  REGISTRY_CLOUD_IDENTITY              read private ECR, GCR/Artifact Registry and ACR images that
                                       a pod has no pull secret for with the webhook's own cloud
                                       identity (below) [default: true]; false: only the pod's
                                       pull secrets, so no pod author can learn the ENTRYPOINT/CMD
                                       of an image only the webhook may pull (such pods then need
                                       a command or a pull secret)
  HTTPS_PROXY, NO_PROXY                registry (and cloud API) connections go through the proxy
  Private ECR registries (ACCOUNT.dkr.ecr.REGION.amazonaws.com) without a pull secret: a token
  from ecr:GetAuthorizationToken, kept until it expires. AWS credentials, first set wins:
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
    AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN [AWS_ROLE_SESSION_NAME,
      AWS_REGION or AWS_DEFAULT_REGION]                                           (IRSA)
    AWS_CONTAINER_CREDENTIALS_FULL_URI or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI,
      AWS_CONTAINER_AUTHORIZATION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (Pod Identity)
    the instance role: AWS_EC2_METADATA_SERVICE_ENDPOINT [http://169.254.169.254],
      off with AWS_EC2_METADATA_DISABLED=true
  ECR Public (public.ecr.aws): a token from ecr-public:GetAuthorizationToken with the same
    credentials (else anonymous pulls, which are rate-limited harder)
  AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL_ECR_PUBLIC, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL
                                       API endpoints [AWS's]
  GCR and Artifact Registry (*gcr.io, *.pkg.dev) without a pull secret: a Google access token as
  _token, kept until it expires; from GOOGLE_APPLICATION_CREDENTIALS (a service-account key
  file), else the metadata server (GKE Workload Identity) at GCE_METADATA_HOST
  [metadata.google.internal]
  ACR (*.azurecr.io, .cn, .de, .us) without a pull secret: an Entra ID token exchanged at the
  registry's /oauth2/exchange, first set wins:
    AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET
    AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_FEDERATED_TOKEN_FILE          (workload identity)
    the managed identity from IMDS: AZURE_POD_IDENTITY_AUTHORITY_HOST [http://169.254.169.254],
      AZURE_CLIENT_ID for a user-assigned one
  AZURE_AUTHORITY_HOST                 Entra ID [https://login.microsoftonline.com]

Secrets, ConfigMaps, custom objects (the webhook reads Vault itself; same annotations as pods):
  VAULT_ADDR, VAULT_ROLE [default], VAULT_PATH, VAULT_AUTH_METHOD, VAULT_NAMESPACE, VAULT_TLS_SECRET
                                       (ca.crt of that Secret in KUBERNETES_NAMESPACE), and the
                                       other VAULT_* variables as vault-env reads them
  VAULT_TOKEN_FILE, VAULT_TOKEN        a token to use as is; else a login with the webhook's
                                       service-account JWT (KUBERNETES_SERVICE_ACCOUNT_TOKEN)
  VAULT_SERVICEACCOUNT                 default of the vault-serviceaccount annotation: log in as
                                       that ServiceAccount of the object's namespace. Needs
                                       TLS_CLIENT_CA_FILE (else any caller could forge a review and
                                       have the webhook act as any ServiceAccount), or
  VAULT_SERVICEACCOUNT_ALLOW_UNVERIFIED_CALLERS=true  (a warning at start)
  VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS
                                       resolve references for callers the webhook cannot verify
                                       (no TLS_CLIENT_CA_FILE, or no allowed certificate): only
                                       where nothing but the API server can reach the webhook
                                       [default: false: such reviews are denied, saying why; dry
                                       runs and objects without references are not affected]
  VAULT_OBJECT_LOGINS                  logins an object's vault-auth-method/vault-path/vault-role
                                       (and vault-namespace) may choose for the webhook's identity,
                                       besides the default (VAULT_AUTH_METHOD, VAULT_PATH,
                                       VAULT_ROLE, VAULT_NAMESPACE): comma-separated
                                       [METHOD:][NAMESPACE/]MOUNT:ROLE, a part may be *, a role may
                                       end with *; * alone for any (Bank-Vaults) [default: none]
  VAULT_OBJECT_PATHS                   Vault path prefixes objects may read and write, comma-
                                       separated (secret/data/shared, secret/data/team-*)
                                       [default: any secret path]. Never: a path with %, . or ..
                                       segments, //, or a directory named auth, sys, identity or
                                       cubbyhole (under any Vault namespace)
  VAULT_ADDR_ALLOWLIST                 other addresses a vault-addr annotation may name
  VAULT_ALLOW_PRIVATE_ADDR             allow loopback/private IPs there [default: false]
  VAULT_ALLOW_OBJECT_SKIP_VERIFY       honour vault-skip-verify annotations on objects and pods
                                       (Bank-Vaults v1.23.1) [default: false: a warning says
                                       the annotation is ignored]
  One token per address/role/mount/identity is reused until 2/3 of its TTL; tokens the webhook
  obtained are revoked when it stops.";

#[derive(Debug, Clone)]
pub struct Settings {
    /// The webhook's own log level and format.
    pub log_level: String,
    pub json_log: bool,
    pub server: ServerSettings,
    pub pods: PodDefaults,
    pub objects: ObjectDefaults,
    pub registry: RegistrySettings,
    pub vault: VaultSettings,
    /// `vault-serviceaccount` allowed although callers are not verified (warned at start).
    pub unverified_impersonation: bool,
    /// A `VAULT_TOKEN` set on the webhook. Bank-Vaults copies it into every pod spec in clear text;
    /// we never do (it would land in etcd).
    pub has_vault_token: bool,
}

const EXPECTED_QUANTITY: &str = "a Kubernetes quantity such as 100m or 256Mi";

impl Settings {
    pub fn from_env(env: &Env) -> Result<Settings, Vec<FieldError>> {
        let mut r = Reader::new(env);
        let vault = read_vault_defaults(&mut r);
        let pods = read_pod_defaults(&mut r, vault.clone());
        let server = ServerSettings {
            listen_address: r.string(LISTEN_ADDRESS, ":8443"),
            telemetry_listen_address: r.text(TELEMETRY_LISTEN_ADDRESS),
            tls_cert_file: r.string(TLS_CERT_FILE, ""),
            tls_key_file: r.string(TLS_PRIVATE_KEY_FILE, ""),
            tls_reload_interval: r.duration(TLS_RELOAD_INTERVAL, Duration::from_secs(5)),
            client_ca_file: r.text(TLS_CLIENT_CA_FILE),
            client_names: r.parsed(TLS_CLIENT_ALLOWED_NAMES, AllowedNames::default(), "comma-separated names, or *", AllowedNames::parse),
            limits: read_limits(&mut r),
        };
        let unverified_impersonation = r.bool(VAULT_SERVICEACCOUNT_ALLOW_UNVERIFIED_CALLERS, false);
        let mut objects = ObjectDefaults {
            addr_policy: AddrPolicy::new(&vault.addr, &r.string(VAULT_ADDR_ALLOWLIST, ""), r.bool(VAULT_ALLOW_PRIVATE_ADDR, false)),
            allow_skip_verify: r.bool(VAULT_ALLOW_OBJECT_SKIP_VERIFY, false),
            service_account: r.parsed(VAULT_SERVICEACCOUNT, String::new(), EXPECTED_KUBE_NAME, kube_name),
            allow_service_account: server.client_ca_file.is_some() || unverified_impersonation,
            logins: r.parsed(VAULT_OBJECT_LOGINS, Vec::new(), EXPECTED_LOGINS, LoginRule::parse_list),
            paths: r.parsed(VAULT_OBJECT_PATHS, Vec::new(), EXPECTED_PATHS, path_prefixes),
            allow_unverified_callers: r.bool(VAULT_OBJECT_ALLOW_UNVERIFIED_CALLERS, false),
            given_token: false,
            vault,
        };
        if !objects.service_account.is_empty() && !objects.allow_service_account {
            r.push(FieldError::other(VAULT_SERVICEACCOUNT, SERVICE_ACCOUNT_NEEDS_CLIENT_AUTH));
        }
        if server.tls_cert_file.is_empty() || server.tls_key_file.is_empty() {
            r.push(FieldError::other(
                format!("{TLS_CERT_FILE}/{TLS_PRIVATE_KEY_FILE}"),
                "both must be set: the webhook serves HTTPS only (the API server requires it)",
            ));
        }
        // The successor's provider setting: both values are served the same way; any other is
        // a provider this webhook does not have.
        let _provider = r.parsed(PROVIDER, "vault".to_string(), "vault or bao (other providers are not supported)", |s| {
            crate::annotations::PROVIDERS.contains(&s).then(|| s.to_string())
        });
        let registry = read_registry(&mut r);
        let (log_level, own_namespace, has_vault_token) = (r.string(LOG_LEVEL, "info"), r.text(KUBERNETES_NAMESPACE), r.is_set(core::VAULT_TOKEN));
        let mut errors = r.finish(()).err().unwrap_or_default();
        // The webhook's own Vault client: vault-env's reading of the same environment, checked
        // now so that a bad value stops the start instead of failing the first Secret. A variable
        // both read is reported once.
        let base = Config::from_env(env).map_err(|core_errors| {
            let more: Vec<FieldError> = core_errors.into_iter().filter(|e| !errors.iter().any(|o| o.name == e.name)).collect();
            errors.extend(more);
        });
        let unverified_impersonation = unverified_impersonation && server.client_ca_file.is_none();
        match base {
            Ok(base) if errors.is_empty() => Ok(Settings {
                log_level,
                json_log: pods.json_log,
                server,
                pods,
                objects: {
                    objects.given_token = base.auth.token.is_some() || base.auth.token_file.is_some();
                    objects
                },
                registry,
                unverified_impersonation,
                vault: VaultSettings { base, own_namespace, clouds: vault_env::config::cloud_auths(env) },
                has_vault_token,
            }),
            _ => Err(errors),
        }
    }
}

const EXPECTED_PATHS: &str = "comma-separated Vault path prefixes (no %, no . or .. segments, no //; a trailing * for any continuation)";

/// `VAULT_OBJECT_PATHS`: each prefix canonical (its `*` aside).
fn path_prefixes(text: &str) -> Option<Vec<String>> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_suffix('*') {
            Some("") => Some("*".to_string()),
            Some(stem) => canonical(stem.trim_end_matches('/')).ok().map(|c| format!("{c}{}*", if stem.ends_with('/') { "/" } else { "" })),
            None => canonical(p).ok().map(String::from),
        })
        .collect()
}

fn seconds_to_minutes(s: &str) -> Option<Duration> {
    parse_duration(s).filter(|d| (Duration::from_secs(1)..=Duration::from_secs(600)).contains(d))
}

fn read_limits(r: &mut Reader<'_, Env>) -> Limits {
    let d = Limits::default();
    let positive = |s: &str| s.parse::<usize>().ok().filter(|n| (1..=1_000_000).contains(n));
    Limits {
        request_timeout: r.parsed(REQUEST_TIMEOUT, d.request_timeout, "a duration from 1s to 10m", seconds_to_minutes),
        max_connections: r.parsed(MAX_CONNECTIONS, d.max_connections, "a number from 1 to 1000000", positive),
        max_requests: r.parsed(MAX_CONCURRENT_REQUESTS, d.max_requests, "a number from 1 to 1000000", positive),
        header_read_timeout: r.parsed(HEADER_READ_TIMEOUT, d.header_read_timeout, "a duration from 1s to 10m", seconds_to_minutes),
        idle_timeout: r.parsed(IDLE_TIMEOUT, d.idle_timeout, "a duration from 1s to 1h", |s| {
            parse_duration(s).filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
        }),
        ..d
    }
}

fn read_vault_defaults(r: &mut Reader<'_, Env>) -> VaultDefaults {
    let d = VaultDefaults::default();
    VaultDefaults {
        addr: r.string(core::VAULT_ADDR, &d.addr),
        skip_verify: r.bool(core::VAULT_SKIP_VERIFY, d.skip_verify),
        role: r.string(core::VAULT_ROLE, &d.role),
        path: r.string(core::VAULT_PATH, &d.path),
        auth_method: r.string(core::VAULT_AUTH_METHOD, &d.auth_method),
        tls_secret: r.string(VAULT_TLS_SECRET, &d.tls_secret),
        client_timeout: r.duration(core::VAULT_CLIENT_TIMEOUT, d.client_timeout),
        namespace: r.string(core::VAULT_NAMESPACE, &d.namespace),
        ignore_missing_secrets: r.bool(core::VAULT_IGNORE_MISSING_SECRETS, d.ignore_missing_secrets),
        transit_key_id: r.string(TRANSIT_KEY_ID, &d.transit_key_id),
        transit_path: r.string(TRANSIT_PATH, &d.transit_path),
        transit_batch_size: r.int(TRANSIT_BATCH_SIZE, d.transit_batch_size),
    }
}

fn read_pod_defaults(r: &mut Reader<'_, Env>, vault: VaultDefaults) -> PodDefaults {
    let d = PodDefaults::default();
    let mut quantity = |name: &str, default: &str| r.parsed(name, default.to_string(), EXPECTED_QUANTITY, |s| is_quantity(s).then(|| s.to_string()));
    let resources = Resources {
        cpu_request: quantity(VAULT_ENV_CPU_REQUEST, &d.resources.cpu_request),
        memory_request: quantity(VAULT_ENV_MEMORY_REQUEST, &d.resources.memory_request),
        cpu_limit: quantity(VAULT_ENV_CPU_LIMIT, &d.resources.cpu_limit),
        memory_limit: quantity(VAULT_ENV_MEMORY_LIMIT, &d.resources.memory_limit),
    };
    PodDefaults {
        vault,
        env_daemon: r.optional(core::VAULT_ENV_DAEMON, EXPECTED_BOOL, parse_bool),
        env_delay: r.optional(core::VAULT_ENV_DELAY, "a duration such as 10s", parse_duration),
        env_passthrough: r.string(core::VAULT_ENV_PASSTHROUGH, &d.env_passthrough),
        env_image: r.string(VAULT_ENV_IMAGE, &d.env_image),
        env_pull_policy: r.parsed(VAULT_ENV_PULL_POLICY, d.env_pull_policy, EXPECTED_PULL_POLICY, pull_policy),
        resources,
        allow_privilege_escalation: r.bool(PSP_ALLOW_PRIVILEGE_ESCALATION, d.allow_privilege_escalation),
        run_as_non_root: r.bool(RUN_AS_NON_ROOT, d.run_as_non_root),
        run_as_user: r.int(RUN_AS_USER, d.run_as_user),
        run_as_group: r.int(RUN_AS_GROUP, d.run_as_group),
        readonly_root_fs: r.bool(READONLY_ROOT_FS, d.readonly_root_fs),
        registry_skip_verify: r.bool(REGISTRY_SKIP_VERIFY, d.registry_skip_verify),
        allow_skip_verify: r.bool(VAULT_ALLOW_OBJECT_SKIP_VERIFY, d.allow_skip_verify),
        service_account: r.parsed(VAULT_SERVICEACCOUNT, d.service_account.clone(), EXPECTED_KUBE_NAME, kube_name),
        volume_medium: r.parsed(VAULT_ENV_VOLUME_MEDIUM, d.volume_medium.clone(), EXPECTED_MEDIUM, volume_medium),
        app_log_level: r.parsed(core::VAULT_LOG_LEVEL, d.app_log_level, EXPECTED_LOG_LEVEL, log_level),
        json_log: r.bool(ENABLE_JSON_LOG, d.json_log),
        agent: AgentDefaults {
            init: r.bool(VAULT_AGENT, d.agent.init),
            image: r.string(VAULT_IMAGE, &d.agent.image),
            pull_policy: r.parsed(VAULT_IMAGE_PULL_POLICY, d.agent.pull_policy.clone(), EXPECTED_PULL_POLICY, pull_policy),
            sa_mount_path: r.string(SERVICE_ACCOUNT_TOKEN_VOLUME_NAME, &d.agent.sa_mount_path),
            ct_image: r.string(VAULT_CT_IMAGE, &d.agent.ct_image),
            ct_pull_policy: r.parsed(VAULT_CT_PULL_POLICY, d.agent.ct_pull_policy.clone(), EXPECTED_PULL_POLICY, pull_policy),
        },
    }
}

fn read_registry(r: &mut Reader<'_, Env>) -> RegistrySettings {
    let default_pull_secret = match (r.text(DEFAULT_IMAGE_PULL_SECRET), r.text(DEFAULT_IMAGE_PULL_SECRET_NAMESPACE)) {
        (Some(secret), Some(namespace)) => {
            Some(DefaultPullSecret { secret, namespace, service_account: r.string(DEFAULT_IMAGE_PULL_SECRET_SERVICE_ACCOUNT, "") })
        }
        _ => None,
    };
    let d = RegistrySettings::default();
    RegistrySettings {
        cache_size: r.int(REGISTRY_CACHE_SIZE, d.cache_size),
        cache_ttl: r.duration(REGISTRY_CACHE_TTL, d.cache_ttl),
        credentials_ttl: r.duration(REGISTRY_CREDENTIALS_TTL, d.credentials_ttl),
        timeout: r.duration(REGISTRY_TIMEOUT, d.timeout),
        default_platform: r.parsed(REGISTRY_DEFAULT_PLATFORM, d.default_platform, "os/arch[/variant], e.g. linux/arm64", Platform::parse),
        default_pull_secret,
        ecr: EcrSettings {
            source: CredentialSource::read(r, "vault-secrets-webhook"),
            api_endpoint: r.text(AWS_ENDPOINT_URL_ECR).or_else(|| r.text(AWS_ENDPOINT_URL)),
            public_endpoint: r.text(AWS_ENDPOINT_URL_ECR_PUBLIC).or_else(|| r.text(AWS_ENDPOINT_URL)),
        },
        gcp: GcpSettings {
            endpoints: GcpEndpoints::new(r.text(gcp::GCE_METADATA_HOST).as_deref(), None),
            key_file: r.text(GOOGLE_APPLICATION_CREDENTIALS).filter(|f| !f.trim().is_empty()).map(std::path::PathBuf::from),
        },
        acr: read_acr(r),
        cloud_identity: r.bool(REGISTRY_CLOUD_IDENTITY, d.cloud_identity),
        mirrors: r.parsed(REGISTRY_MIRRORS, Vec::new(), "registry=mirror pairs, comma-separated (docker.io=mirror.local:5000)", parse_mirrors),
        own_credentials: own_docker_config(r),
    }
}

/// The webhook's own docker config: `DOCKER_CONFIG`/config.json, else `$HOME/.docker/config.json`;
/// none when the file does not exist, an error naming it when it cannot be read.
fn own_docker_config(r: &mut Reader<'_, Env>) -> Vec<DockerAuth> {
    let file = match (r.text(DOCKER_CONFIG), r.text("HOME")) {
        (Some(dir), _) => std::path::Path::new(&dir).join("config.json"),
        (None, Some(home)) => std::path::Path::new(&home).join(".docker/config.json"),
        (None, None) => return Vec::new(),
    };
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            r.fail(DOCKER_CONFIG, format!("{}: {e}", file.display()));
            return Vec::new();
        }
    };
    match parse_pull_secret(&[(".dockerconfigjson".to_string(), bytes)].into()) {
        Ok(creds) => creds,
        Err(why) => {
            r.fail(DOCKER_CONFIG, format!("{}: {why}", file.display()));
            Vec::new()
        }
    }
}

/// The webhook's Entra ID identity for ACR, in the Azure SDKs' order.
fn read_acr(r: &mut Reader<'_, Env>) -> AcrSettings {
    let mut var = |name: &str| r.text(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let (tenant, client_id) = (var(acr::AZURE_TENANT_ID), var(azure::AZURE_CLIENT_ID));
    let source = match (tenant, client_id.clone(), var(acr::AZURE_CLIENT_SECRET), var(acr::AZURE_FEDERATED_TOKEN_FILE)) {
        (Some(tenant), Some(client_id), Some(secret), _) => AadSource::ClientSecret { tenant, client_id, secret: SecretString::new(secret) },
        (Some(tenant), Some(client_id), None, Some(file)) => AadSource::WorkloadIdentity { tenant, client_id, token_file: file.into() },
        _ => AadSource::ManagedIdentity(Imds::new(var(azure::AZURE_POD_IDENTITY_AUTHORITY_HOST).as_deref(), client_id.as_deref())),
    };
    AcrSettings { source, authority: var(acr::AZURE_AUTHORITY_HOST).unwrap_or_else(|| acr::DEFAULT_AUTHORITY.into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, Vec<FieldError>> {
        let env: Env = [(TLS_CERT_FILE, "/c"), (TLS_PRIVATE_KEY_FILE, "/k")].iter().chain(vars).map(|(k, v)| (*k, *v)).collect();
        Settings::from_env(&env)
    }

    #[test]
    fn defaults_match_bank_vaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.pods.vault.addr, "https://vault:8200");
        assert_eq!(s.pods.vault.path, "kubernetes");
        assert_eq!(s.pods.vault.auth_method, "jwt");
        assert_eq!(s.pods.vault.client_timeout, Duration::from_secs(10));
        assert_eq!(s.pods.vault.transit_batch_size, 25);
        assert_eq!(s.pods.env_pull_policy, "IfNotPresent");
        assert_eq!(s.pods.resources.cpu_request, "100m");
        assert_eq!(s.pods.resources.memory_limit, "256Mi");
        assert_eq!(s.server.listen_address, ":8443");
        assert_eq!(s.registry.default_pull_secret, None);
    }

    #[test]
    fn every_bad_setting_is_reported_and_https_is_required() {
        let env: Env =
            [("VAULT_SKIP_VERIFY", "maybe"), ("VAULT_ENV_CPU_LIMIT", "lots"), ("TRANSIT_BATCH_SIZE", "-1"), ("VAULT_ENV_PULL_POLICY", "Sometimes")]
                .into_iter()
                .collect();
        let errors = Settings::from_env(&env).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        for name in ["VAULT_ENV_PULL_POLICY", "VAULT_ENV_CPU_LIMIT", "TRANSIT_BATCH_SIZE", "VAULT_SKIP_VERIFY", "TLS_CERT_FILE/TLS_PRIVATE_KEY_FILE"]
        {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn the_webhooks_own_vault_settings_are_checked_at_start_up() {
        let errors = settings(&[(core::VAULT_CLIENT_CERT, "/cert.pem"), (core::VAULT_MAX_RETRIES, "many")]).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [core::VAULT_CLIENT_KEY, core::VAULT_MAX_RETRIES], "{errors:?}");
    }

    #[test]
    fn default_pull_secret_needs_name_and_namespace() {
        assert_eq!(settings(&[("DEFAULT_IMAGE_PULL_SECRET", "regcred")]).unwrap().registry.default_pull_secret, None);
        let s = settings(&[("DEFAULT_IMAGE_PULL_SECRET", "regcred"), ("DEFAULT_IMAGE_PULL_SECRET_NAMESPACE", "infra")]).unwrap();
        let want = DefaultPullSecret { secret: "regcred".into(), namespace: "infra".into(), service_account: String::new() };
        assert_eq!(s.registry.default_pull_secret, Some(want));
    }

    #[test]
    fn object_access_settings() {
        let s = settings(&[]).unwrap();
        assert!(!s.objects.allow_unverified_callers);
        assert!(s.objects.logins.is_empty() && s.objects.paths.is_empty());
        assert_eq!(s.server.client_names, AllowedNames::default());
        let s = settings(&[
            (VAULT_OBJECT_PATHS, "secret/data/shared/, secret/data/team-*,/kv/x"),
            (VAULT_OBJECT_LOGINS, "kubernetes:reader"),
            (TLS_CLIENT_ALLOWED_NAMES, "api.example"),
        ])
        .unwrap();
        assert_eq!(s.objects.paths, ["secret/data/shared", "secret/data/team-*", "kv/x"]);
        assert_eq!(s.objects.logins.len(), 1);
        assert_eq!(s.server.client_names.0, ["api.example"]);
        let errors =
            settings(&[(VAULT_OBJECT_PATHS, "secret/../auth"), (VAULT_OBJECT_LOGINS, "a:b:c:d"), (TLS_CLIENT_ALLOWED_NAMES, ",")]).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [TLS_CLIENT_ALLOWED_NAMES, VAULT_OBJECT_LOGINS, VAULT_OBJECT_PATHS], "{errors:?}");
        assert!(settings(&[(PROVIDER, "bao")]).is_ok());
        assert_eq!(settings(&[(PROVIDER, "aws")]).unwrap_err()[0].name, PROVIDER);
    }

    /// The defaults `--help` prints, as `NAME [VALUE]` or `[default: VALUE]` after the name: set
    /// explicitly to that value, each must give exactly the settings of leaving it unset. (Prose
    /// defaults, such as "none" or "the pod's ServiceAccount", are not values and are skipped.)
    #[test]
    fn help_prints_the_defaults_the_code_uses() {
        let names: Vec<&str> =
            ALL.iter().chain(&OTHERS).chain(crate::fetch::registry::ecr::credentials::ALL).copied().chain(core::setting_names()).collect();
        let defaults = vault_env::config::reader::printed_defaults(HELP, &names);
        assert!(defaults.len() >= 30, "too few defaults found in --help: {defaults:?}");
        // The webhook's own Vault client gets the address, login and namespace of each object
        // (`fetch::vault`'s client_config); its own defaults for those are never used.
        let comparable = |mut s: Settings| {
            let base = &mut s.vault.base;
            (base.addr, base.tls.skip_verify, base.namespace) = (String::new(), false, None);
            (base.auth.role, base.auth.role_set, base.auth.mount) = (String::new(), false, String::new());
            base.auth.cloud = core::CloudAuth::None;
            format!("{s:?}")
        };
        let unset = comparable(settings(&[]).unwrap());
        for (name, value) in &defaults {
            match settings(&[(name, value)]) {
                Ok(set) => {
                    let set = comparable(set);
                    let at = set.bytes().zip(unset.bytes()).position(|(a, b)| a != b).unwrap_or(set.len().min(unset.len()));
                    let around = |t: &str| t.get(at.saturating_sub(150)..(at + 100).min(t.len())).unwrap_or("").to_string();
                    assert_eq!(
                        set,
                        unset,
                        "--help says {name} defaults to {value:?}; setting that changes the settings:\n  set:   {}\n  unset: {}",
                        around(&set),
                        around(&unset)
                    );
                }
                Err(e) => panic!("--help says {name} defaults to {value:?}, which is not a valid value: {e:?}"),
            }
        }
    }

    #[test]
    fn help_lists_every_setting() {
        for name in ALL.iter().chain(&OTHERS).chain(crate::fetch::registry::ecr::credentials::ALL) {
            assert!(HELP.contains(name), "--help does not mention {name}");
        }
    }
}
