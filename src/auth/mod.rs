//! Getting a Vault token: a token file, a literal token, the token helper file, or a login
//! (jwt/kubernetes, approle, cert, or a cloud identity: [`cloud`]).
//!
//! Precedence (as in Bank-Vaults): `VAULT_TOKEN_FILE` → a literal `VAULT_TOKEN` → the file at
//! `VAULT_TOKEN_PATH` or `$HOME/.vault-token` if it exists (not with `vault:login`) → a login with
//! `VAULT_AUTH_METHOD`. Tokens are never logged.

pub mod cloud;

use crate::SecretString;
use crate::client::{Client, ClientError};
use crate::config::{self, AuthMethod, AuthSettings, Given};
use serde_json::json;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    File(PathBuf),
    Env,
    Helper(PathBuf),
    Login { method: AuthMethod, mount: String, role: String },
}

#[derive(Debug, Clone)]
pub struct Token {
    pub secret: SecretString,
    pub source: TokenSource,
    /// Seconds; 0 for tokens that were given rather than obtained (not known without a lookup).
    pub lease_duration: u64,
    pub renewable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{var}: cannot read {}: {cause}", path.display())]
    ReadFile { var: &'static str, path: PathBuf, cause: String },
    #[error("{var}: {} is empty", path.display())]
    EmptyFile { var: &'static str, path: PathBuf },
    #[error("{0}")]
    Missing(String),
    #[error("{what} login failed (auth/{mount}/login, role {role:?}): {error}")]
    Login { what: &'static str, mount: String, role: String, error: ClientError },
    /// A cloud identity could not be obtained (no secret in `error`).
    #[error("VAULT_AUTH_METHOD={method}: {error}")]
    Cloud { method: &'static str, error: crate::cloud::CloudError },
}

impl AuthError {
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            AuthError::Login { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "{} ({})", config::VAULT_TOKEN_FILE, p.display()),
            TokenSource::Env => f.write_str(config::VAULT_TOKEN),
            TokenSource::Helper(p) => write!(f, "token file {}", p.display()),
            TokenSource::Login { method, mount, role } => write!(f, "{} login at auth/{mount} as role {role:?}", method.name()),
        }
    }
}

fn read_trimmed(var: &'static str, path: &Path) -> Result<SecretString, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthError::ReadFile { var, path: path.to_path_buf(), cause: e.to_string() })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(AuthError::EmptyFile { var, path: path.to_path_buf() });
    }
    Ok(SecretString::new(text))
}

fn given(var: &'static str, file_var: &'static str, g: &Given) -> Result<SecretString, AuthError> {
    match g {
        Given::Value(v) => Ok(v.clone()),
        Given::File(p) => read_trimmed(file_var, p).map_err(|e| match e {
            AuthError::ReadFile { path, cause, .. } => AuthError::ReadFile { var: file_var, path, cause: format!("{cause} (for {var})") },
            other => other,
        }),
    }
}

/// Finds or obtains the token vault-env uses.
pub async fn token(client: &Client, auth: &AuthSettings) -> Result<Token, AuthError> {
    let given_token = |secret, source| Token { secret, source, lease_duration: 0, renewable: false };
    if let Some(path) = &auth.token_file {
        return Ok(given_token(read_trimmed(config::VAULT_TOKEN_FILE, path)?, TokenSource::File(path.clone())));
    }
    if let Some(t) = &auth.token {
        return Ok(given_token(t.clone(), TokenSource::Env));
    }
    if !auth.login_requested
        && let Some(path) = auth.token_helper_file.as_ref().filter(|p| p.is_file())
    {
        tracing::info!("using the token in {}", path.display());
        return Ok(given_token(read_trimmed(config::VAULT_TOKEN_PATH, path)?, TokenSource::Helper(path.clone())));
    }
    login(client, auth).await
}

/// The body of a jwt/kubernetes login (`POST auth/MOUNT/login`); the webhook sends it too.
pub fn jwt_body(role: &str, jwt: &SecretString) -> serde_json::Value {
    json!({ "role": role, "jwt": jwt.expose() })
}

/// The service-account token file (`KUBERNETES_SERVICE_ACCOUNT_TOKEN`, `VAULT_JWT_FILE`).
fn service_account_token(auth: &AuthSettings) -> Result<SecretString, AuthError> {
    let var = config::KUBERNETES_SERVICE_ACCOUNT_TOKEN;
    read_trimmed(var, &auth.jwt_file).map_err(|e| match e {
        AuthError::ReadFile { path, cause, .. } => AuthError::ReadFile {
            var,
            path,
            cause: format!("{cause}\n  hint: mount a service-account token or set {var} / {} to its path", config::VAULT_JWT_FILE),
        },
        other => other,
    })
}

async fn login(client: &Client, auth: &AuthSettings) -> Result<Token, AuthError> {
    let what = auth.method.name();
    let body = match auth.method {
        AuthMethod::Jwt => jwt_body(&auth.role, &service_account_token(auth)?),
        AuthMethod::AppRole => {
            let role_id = auth.role_id.as_ref().ok_or_else(|| {
                AuthError::Missing(format!("VAULT_AUTH_METHOD=approle needs {} or {}", config::VAULT_ROLE_ID, config::VAULT_ROLE_ID_FILE))
            })?;
            let role_id = given(config::VAULT_ROLE_ID, config::VAULT_ROLE_ID_FILE, role_id)?;
            let mut body = json!({ "role_id": role_id.expose() });
            if let Some(secret_id) = &auth.secret_id {
                let secret_id = given(config::VAULT_SECRET_ID, config::VAULT_SECRET_ID_FILE, secret_id)?;
                body["secret_id"] = json!(secret_id.expose());
            }
            body
        }
        AuthMethod::Cert if auth.role_set => json!({ "name": auth.role }),
        AuthMethod::Cert => json!({}),
        AuthMethod::AwsEc2 => {
            let token = service_account_token(auth)?;
            cloud::login_body(auth, client.timeout(), Some(&token)).await.map_err(|error| AuthError::Cloud { method: what, error })?
        }
        AuthMethod::AwsIam | AuthMethod::GcpGce | AuthMethod::GcpIam | AuthMethod::Azure => {
            cloud::login_body(auth, client.timeout(), None).await.map_err(|error| AuthError::Cloud { method: what, error })?
        }
    };
    let role = match auth.method {
        AuthMethod::AppRole => "(role id)".into(),
        AuthMethod::Cert if !auth.role_set => "(any matching certificate)".into(),
        _ => auth.role.clone(),
    };
    let result = client.login(&auth.mount, &body).await;
    let a = result.map_err(|error| AuthError::Login { what, mount: auth.mount.clone(), role: role.clone(), error })?;
    tracing::info!(
        method = what,
        mount = %auth.mount,
        policies = %a.policies.join(","),
        ttl = a.lease_duration,
        renewable = a.renewable,
        "logged in to Vault"
    );
    Ok(Token {
        secret: a.client_token,
        source: TokenSource::Login { method: auth.method, mount: auth.mount.clone(), role },
        lease_duration: a.lease_duration,
        renewable: a.renewable,
    })
}
