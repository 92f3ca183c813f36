//! Command line: `vault-env [--] COMMAND [ARGS]...`. Everything else is configured through the
//! environment, as with Bank-Vaults' vault-env, so the command and its flags pass through untouched.

use crate::error::Error;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub struct Args {
    pub program: OsString,
    pub args: Vec<OsString>,
}

pub enum Parsed {
    Run(Args),
    /// `--copy-to DIR`: copy this binary into DIR (the webhook's init container; needs no shell).
    CopyTo(std::path::PathBuf),
    /// `--help` or `--version` was printed.
    Done(u8),
}

/// Writes `text` to stdout: 0, or 1 when it cannot (`print!` would panic: a closed pipe, a full
/// disk). The exit code of `--help` and `--version`, the webhook's too.
pub fn print(text: &str) -> u8 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    u8::from(out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err())
}

pub const ENV_HELP: &str = "\
References (in any environment variable):
  vault:PATH#KEY                  read KEY at PATH (KV v2 paths include /data/)
  vault:PATH#KEY#VERSION          a KV v2 version
  vault:PATH#TEXT ${.KEY | b64enc} a key template (b64enc b64dec upper lower title trim
                                  urlquery replace trimPrefix trimSuffix index)
  >>vault:PATH#KEY[#{JSON}]       write JSON to PATH, use KEY of the answer
  vault:v1:CIPHERTEXT             transit decryption (needs VAULT_TRANSIT_KEY_ID)
  text ${vault:PATH#KEY} text     inline references, any number per value
  VAULT_TOKEN=vault:login         log in and give the app the obtained token
  bao:… and >>bao:…               the same as vault:… and >>vault:… (Bank-Vaults' successor,
                                  secret-init, names OpenBao references so); BAO_X is read as
                                  VAULT_X, SECRET_INIT_DAEMON/_DELAY/_JSON_LOG/_LOG_LEVEL as
                                  VAULT_ENV_DAEMON/VAULT_ENV_DELAY/VAULT_JSON_LOG/VAULT_LOG_LEVEL,
                                  VAULT_PASSTHROUGH and VAULT_FROM_PATH as VAULT_ENV_*; ours win

Vault connection:
  VAULT_ADDR                      Vault address, its host name in ASCII (an internationalized
                                  name in its xn-- form) [default: https://127.0.0.1:8200]
  VAULT_AGENT_ADDR                overrides VAULT_ADDR
  VAULT_CACERT, VAULT_CAPATH, VAULT_CACERT_BYTES
                                  CA file / directory / inline PEM (replace the system roots)
  VAULT_CLIENT_CERT, VAULT_CLIENT_KEY
                                  client certificate for mTLS
  VAULT_SKIP_VERIFY               do not verify Vault's certificate [default: false]
  VAULT_TLS_SERVER_NAME           name to verify Vault's certificate against
  VAULT_NAMESPACE                 namespace header for every request
  VAULT_CLIENT_TIMEOUT            per-request timeout, and how long to retry an unreachable
                                  Vault at start [default: 10s; a bare number is seconds]
  VAULT_MAX_RETRIES               retries of failed requests after that [default: 2]
  VAULT_HTTP_PROXY, VAULT_PROXY_ADDR
                                  HTTP proxy for Vault
  VAULT_ADDR=unix:///PATH         HTTP over a unix socket (Vault Agent's listener)
  VAULT_HEADERS                   extra request headers, a JSON object of strings (no
                                  X-Vault-*; values are never printed)
  VAULT_RATE_LIMIT                RATE or RATE:BURST requests a second [default: none]
  VAULT_DISABLE_REDIRECTS         follow no redirect at all [default: false: one 307 to the
                                  same scheme, host and port]
  VAULT_CACERT_RELOAD             read a changed VAULT_CACERT/VAULT_CAPATH again at the next
                                  connection [default: true]
  VAULT_SRV_LOOKUP, VAULT_WRAP_TTL
                                  not applied (a warning): the address is used as it is, and
                                  vault-env's own reads are not wrapped

Authentication (first that applies):
  VAULT_TOKEN_FILE                file holding a token
  VAULT_TOKEN                     a token, or vault:login
  VAULT_TOKEN_PATH                token file used when it exists [default: $HOME/.vault-token]
  VAULT_AUTH_METHOD               jwt | kubernetes | namespaced | approle | cert | aws-iam |
                                  aws-ec2 | gcp-gce | gcp-iam | azure [default: jwt]
  VAULT_PATH                      auth mount [default: kubernetes; approle, cert, aws, gcp,
                                  azure for those methods]
  VAULT_ROLE                      role [default: default; cert: any matching certificate]
  KUBERNETES_SERVICE_ACCOUNT_TOKEN, VAULT_JWT_FILE
                                  JWT file paths (jwt; aws-ec2's nonce is its hex SHA-256, as
                                  Bank-Vaults') [default:
                                  /var/run/secrets/kubernetes.io/serviceaccount/token]
  VAULT_ROLE_ID, VAULT_ROLE_ID_FILE, VAULT_SECRET_ID, VAULT_SECRET_ID_FILE
                                  AppRole credentials (values or files)
  cert: the client certificate of VAULT_CLIENT_CERT/VAULT_CLIENT_KEY.
  aws-iam: a signed sts:GetCallerIdentity; credentials from AWS_ACCESS_KEY_ID/
    AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, IRSA (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN),
    EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
    or the instance role; the global STS endpoint unless AWS_REGION (or AWS_ENDPOINT_URL_STS)
    says; VAULT_AWS_IAM_SERVER_ID for roles that require the X-Vault-AWS-IAM-Server-ID header
  aws-ec2: the instance identity document from IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT)
  gcp-gce, gcp-iam: the metadata server (GCE_METADATA_HOST); gcp-iam signs with IAM Credentials
    (CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS)
  azure: the managed identity (AZURE_CLIENT_ID for a user-assigned one) from IMDS
    (AZURE_POD_IDENTITY_AUTHORITY_HOST)
  Metadata requests are bounded by VAULT_CLIENT_TIMEOUT.

Behaviour:
  VAULT_IGNORE_MISSING_SECRETS    a missing path, version or key, or a failed transit decryption,
                                  leaves the variable unset instead of failing [default: false]
  VAULT_ENV_FROM_PATH             PATH[#VERSION],... : every key becomes a variable
                                  (variables set on the pod win)
  VAULT_TRANSIT_KEY_ID            transit key for vault:vN: values
  VAULT_TRANSIT_PATH              transit mount [default: transit]
  VAULT_TRANSIT_BATCH_SIZE        ciphertexts per batch request [default: 25]
  VAULT_ENV_PASSTHROUGH           comma list of vault-env settings to pass to the app anyway
  VAULT_REVOKE_TOKEN              exec mode: revoke the token before starting the app
                                  [default: false]; daemon mode: revoke the token vault-env
                                  obtained, and its leases, on exit [default: true]
  VAULT_ENV_DELAY                 wait this long before starting the app [default: 0s]
  VAULT_LOG_LEVEL                 trace | debug | info | warn | error [default: info]
  VAULT_JSON_LOG                  JSON log lines (all logs go to stderr) [default: false]

Daemon mode (vault-env stays as the app's parent, PID 1 in a container):
  VAULT_ENV_DAEMON                true: daemon mode; false: exec mode; unset: daemon mode when a
                                  secret has a lease or vault:login's token must be kept alive
  VAULT_ENV_ON_LEASE_END          restart | exit | ignore [default: restart]: when a lease can't
                                  be extended, fetch new secrets and restart the app before the
                                  old ones expire; or stop the app and exit (75) at expiry
  VAULT_ENV_STOP_SIGNAL           signal that asks the app to stop [default: SIGTERM]
  VAULT_ENV_STOP_TIMEOUT          then SIGKILL after this long [default: 10s]
  VAULT_ENV_RESTART_SPLAY         restart up to this much earlier, at random [default: a fifth
                                  of the lease, at most 5m, so a fleet does not restart at once]
  VAULT_ENV_PROCESS_GROUP         run the app in its own process group and signal the group
                                  [default: false]
  VAULT_ENV_TERMINATE_DESCENDANTS when the app exits, SIGTERM processes it left behind
                                  [default: false]

The app never sees the Vault token or these settings (except the connection settings with
vault:login, and names listed in VAULT_ENV_PASSTHROUGH). Without any reference, vault-env does
not contact Vault and just runs the command.

Exit codes (the app's own code once it runs):
  64   usage or configuration error, malformed reference, unreadable token/JWT file
  65   a secret, version or key is missing, or a value is not text
  69   Vault unreachable (retried for VAULT_CLIENT_TIMEOUT), or a cloud login's identity
       service unreachable or failing
  70   internal error: the async runtime or signal handling could not start
  75   daemon mode: a lease ended and could not be replaced
  77   Vault refused the login or a read (permission denied), or the cloud refused the
       identity of a cloud login
  126  the command cannot be executed
  127  the command was not found";

const ABOUT: &str = "Runs COMMAND with vault: references in its environment replaced by secrets from Vault or OpenBao";
const USAGE: &str = "Usage: vault-env [--] COMMAND [ARGS]...\n       vault-env --copy-to DIR";
const OPTIONS: &str = "\
Arguments:
  [COMMAND]...  the program to run, then its arguments (passed through untouched)

Options:
      --copy-to <DIR>  copy this binary to DIR/vault-env and exit (what the webhook's init container runs)
  -h, --help           Print help
  -V, --version        Print version";

/// The whole of `--help`.
pub fn help() -> String {
    format!("{ABOUT}\n\n{USAGE}\n\n{OPTIONS}\n\n{ENV_HELP}\n")
}

/// A usage error, with the usage where it helps and the hint Bank-Vaults' users need (theirs takes
/// no command).
fn usage_error(what: &str, with_usage: bool) -> Error {
    let usage = if with_usage { format!("\n\n{USAGE}") } else { String::new() };
    Error::Usage(format!(
        "{what}{usage}\n\nFor more information, try '--help'.\n  hint: vault-env needs the command to run, e.g. vault-env my-app --flag (Bank-Vaults: no command is given)"
    ))
}

/// Reads the command line. Before the command: vault-env's own options (`--help`, `-h`,
/// `--version`, `-V`, `--copy-to DIR`, `--copy-to=DIR`) and `--`. The first other word is the
/// command, even when it starts with `-`, and every word after it is the command's.
pub fn parse(argv: Vec<OsString>) -> Result<Parsed, Error> {
    let mut words = argv.into_iter().skip(1);
    let mut copy_to: Option<PathBuf> = None;
    let mut command: Vec<OsString> = Vec::new();
    while let Some(word) = words.next() {
        let dir = match word.as_bytes() {
            b"--" => {
                command.extend(words.by_ref());
                break;
            }
            b"--help" | b"-h" => return Ok(Parsed::Done(print(&help()))),
            b"--version" | b"-V" => return Ok(Parsed::Done(print(&format!("vault-env {}\n", env!("CARGO_PKG_VERSION"))))),
            b"--copy-to" => words.next().ok_or_else(|| usage_error("a value is required for '--copy-to <DIR>' but none was supplied", false))?,
            w if w.starts_with(b"--copy-to=") => OsStr::from_bytes(&w[b"--copy-to=".len()..]).to_os_string(),
            _ => {
                command.push(word);
                command.extend(words.by_ref());
                break;
            }
        };
        if copy_to.replace(PathBuf::from(dir)).is_some() {
            return Err(usage_error("the argument '--copy-to <DIR>' cannot be used multiple times", true));
        }
    }
    match (copy_to, command.is_empty()) {
        (Some(dir), true) => Ok(Parsed::CopyTo(dir)),
        (Some(_), false) => Err(usage_error("the argument '--copy-to <DIR>' cannot be used with one or more of the other specified arguments", true)),
        (None, true) => Err(usage_error("the following required arguments were not provided:\n  <COMMAND>...", true)),
        (None, false) => {
            let program = command.remove(0);
            Ok(Parsed::Run(Args { program, args: command }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Option<(String, Vec<String>)> {
        match parse(argv.iter().map(OsString::from).collect()) {
            Ok(Parsed::Run(a)) => Some((a.program.into_string().unwrap(), a.args.into_iter().map(|s| s.into_string().unwrap()).collect())),
            _ => None,
        }
    }

    #[test]
    fn cli_passes_command_flags_through() {
        assert_eq!(run(&["vault-env", "sh", "-c", "echo hi"]), Some(("sh".into(), vec!["-c".into(), "echo hi".into()])));
        assert_eq!(run(&["vault-env", "--", "app", "--help"]), Some(("app".into(), vec!["--help".into()])));
        assert_eq!(run(&["vault-env", "app", "--version", "-x"]), Some(("app".into(), vec!["--version".into(), "-x".into()])));
        assert_eq!(run(&["vault-env", "--", "-dash-app"]), Some(("-dash-app".into(), vec![])));
    }

    #[test]
    fn cli_copy_to() {
        assert!(matches!(parse(vec!["vault-env".into(), "--copy-to".into(), "/vault/".into()]), Ok(Parsed::CopyTo(d)) if d.as_os_str() == "/vault/"));
        // After `--` or the command, it is the app's.
        assert_eq!(run(&["vault-env", "--", "--copy-to", "x"]), Some(("--copy-to".into(), vec!["x".into()])));
        assert_eq!(run(&["vault-env", "app", "--copy-to", "x"]), Some(("app".into(), vec!["--copy-to".into(), "x".into()])));
        assert!(parse(vec!["vault-env".into(), "--copy-to".into(), "/v".into(), "app".into()]).is_err());
        assert!(matches!(parse(vec!["vault-env".into(), "--copy-to=/vault/".into()]), Ok(Parsed::CopyTo(d)) if d.as_os_str() == "/vault/"));
        let usage = |argv: &[&str]| match parse(argv.iter().map(OsString::from).collect()) {
            Err(e) => (e.exit_code(), e.to_string()),
            Ok(_) => panic!("{argv:?} should be a usage error"),
        };
        let (code, text) = usage(&["vault-env", "--copy-to"]);
        assert_eq!(code, 64);
        assert!(text.contains("a value is required for '--copy-to <DIR>'"), "{text}");
        assert!(usage(&["vault-env", "--copy-to", "/a", "--copy-to", "/b"]).1.contains("cannot be used multiple times"));
        assert!(usage(&["vault-env", "--copy-to=/a", "--", "app"]).1.contains("cannot be used with"));
    }

    /// A word that is not one of ours starts the command, even with a dash, and our options after
    /// the command are the command's.
    #[test]
    fn cli_reads_its_own_options_only_before_the_command() {
        assert_eq!(run(&["vault-env", "-x", "app"]), Some(("-x".into(), vec!["app".into()])));
        assert_eq!(run(&["vault-env", "-hx"]), Some(("-hx".into(), vec![])));
        assert_eq!(run(&["vault-env", "--copy-tox", "a"]), Some(("--copy-tox".into(), vec!["a".into()])));
        assert_eq!(run(&["vault-env", "app", "-h", "-V", "--"]), Some(("app".into(), vec!["-h".into(), "-V".into(), "--".into()])));
        for flag in ["-h", "--help", "-V", "--version"] {
            assert!(matches!(parse(vec!["vault-env".into(), flag.into(), "app".into()]), Ok(Parsed::Done(_))), "{flag}");
        }
        assert!(help().starts_with(ABOUT) && help().contains(USAGE) && help().ends_with(&format!("{ENV_HELP}\n")));
    }

    #[test]
    fn cli_without_command_is_usage_error() {
        match parse(vec!["vault-env".into()]) {
            Err(e) => assert_eq!(e.exit_code(), 64),
            Ok(_) => panic!("expected an error"),
        }
    }

    /// The defaults `--help` prints: set explicitly to that value, each gives exactly the
    /// configuration of leaving it unset (the webhook's settings have the same test).
    #[test]
    fn help_prints_the_defaults_the_code_uses() {
        use crate::config::{Config, Env};
        let names: Vec<&str> = crate::config::setting_names().collect();
        let defaults = crate::config::reader::printed_defaults(ENV_HELP, &names);
        assert!(defaults.len() >= 15, "too few defaults found in --help: {defaults:?}");
        // Whether VAULT_ROLE was given changes only what the cert method sends (its help says so).
        let comparable = |mut c: Config| {
            c.auth.role_set = false;
            format!("{c:?}")
        };
        let unset = comparable(Config::from_env(&Env::default()).unwrap());
        // VAULT_REVOKE_TOKEN prints a default per mode (false in exec mode, true in daemon
        // mode); unset, the mode decides, which no single value can stand for.
        for (name, value) in defaults.iter().filter(|(n, _)| *n != crate::config::VAULT_REVOKE_TOKEN) {
            let env: Env = [(*name, value.as_str())].into_iter().collect();
            match Config::from_env(&env) {
                Ok(set) => assert_eq!(comparable(set), unset, "--help says {name} defaults to {value:?}; setting that changes the configuration"),
                Err(e) => panic!("--help says {name} defaults to {value:?}, which is not a valid value: {e:?}"),
            }
        }
    }

    #[test]
    fn help_lists_every_setting() {
        use crate::config::*;
        for var in [
            VAULT_ADDR,
            VAULT_AGENT_ADDR,
            VAULT_CACERT,
            VAULT_CAPATH,
            VAULT_CACERT_BYTES,
            VAULT_CLIENT_CERT,
            VAULT_CLIENT_KEY,
            VAULT_SKIP_VERIFY,
            VAULT_TLS_SERVER_NAME,
            VAULT_NAMESPACE,
            VAULT_CLIENT_TIMEOUT,
            VAULT_MAX_RETRIES,
            VAULT_HTTP_PROXY,
            VAULT_PROXY_ADDR,
            VAULT_TOKEN,
            VAULT_TOKEN_FILE,
            VAULT_TOKEN_PATH,
            VAULT_ROLE,
            VAULT_PATH,
            VAULT_AUTH_METHOD,
            KUBERNETES_SERVICE_ACCOUNT_TOKEN,
            VAULT_JWT_FILE,
            VAULT_ROLE_ID,
            VAULT_ROLE_ID_FILE,
            VAULT_SECRET_ID,
            VAULT_SECRET_ID_FILE,
            VAULT_AWS_IAM_SERVER_ID,
            crate::cloud::gcp::GCE_METADATA_HOST,
            crate::cloud::gcp::CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS,
            crate::cloud::azure::AZURE_POD_IDENTITY_AUTHORITY_HOST,
            crate::cloud::azure::AZURE_CLIENT_ID,
            crate::cloud::aws::credentials::AWS_ENDPOINT_URL_STS,
            crate::cloud::aws::credentials::AWS_EC2_METADATA_SERVICE_ENDPOINT,
            crate::cloud::aws::credentials::AWS_WEB_IDENTITY_TOKEN_FILE,
            crate::cloud::aws::credentials::AWS_CONTAINER_CREDENTIALS_FULL_URI,
            VAULT_IGNORE_MISSING_SECRETS,
            VAULT_ENV_PASSTHROUGH,
            VAULT_JSON_LOG,
            VAULT_LOG_LEVEL,
            VAULT_REVOKE_TOKEN,
            VAULT_ENV_DAEMON,
            VAULT_ENV_DELAY,
            VAULT_ENV_FROM_PATH,
            VAULT_TRANSIT_KEY_ID,
            VAULT_TRANSIT_PATH,
            VAULT_TRANSIT_BATCH_SIZE,
            VAULT_ENV_STOP_SIGNAL,
            VAULT_ENV_STOP_TIMEOUT,
            VAULT_ENV_ON_LEASE_END,
            VAULT_ENV_RESTART_SPLAY,
            VAULT_ENV_PROCESS_GROUP,
            VAULT_ENV_TERMINATE_DESCENDANTS,
            VAULT_HEADERS,
            VAULT_RATE_LIMIT,
            VAULT_DISABLE_REDIRECTS,
            VAULT_CACERT_RELOAD,
            VAULT_SRV_LOOKUP,
            VAULT_WRAP_TTL,
        ] {
            assert!(ENV_HELP.contains(var), "--help does not mention {var}");
        }
        for code in ["64", "65", "69", "70", "75", "77", "126", "127"] {
            assert!(ENV_HELP.contains(code), "--help does not list exit code {code}");
        }
    }
}
