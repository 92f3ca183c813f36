//! What vault-env holds from Vault, in both modes: the client, the token and the resolved secrets.
//! Exec mode uses it once; daemon mode keeps it and replaces it when leases end.

use crate::SecretString;
use crate::auth::{self, Token};
use crate::client::Client;
use crate::config::Config;
use crate::error::Error;
use crate::resolve::{self, Plan, Resolved};
use std::ffi::OsString;
use std::path::PathBuf;

/// The command to run.
pub struct App {
    pub program: PathBuf,
    pub argv0: OsString,
    pub args: Vec<OsString>,
}

/// What vault-env holds from Vault: the client, the token, and the resolved secrets.
pub struct Session {
    /// Without a token: for logging in again.
    pub login_client: Client,
    /// With the token.
    pub client: Client,
    pub token: Token,
    pub resolved: Resolved,
}

impl Session {
    /// Logs in (or reads the token) and resolves every reference.
    pub async fn open(config: &Config, plan: &Plan) -> Result<Session, Error> {
        let login_client = Client::new(config)?;
        let token = auth::token(&login_client, &config.auth).await?;
        tracing::debug!(source = %token.source, "using token");
        let client = login_client.with_token(token.secret.clone());
        let resolved = resolve::fetch_and_render(&client, plan, config).await.map_err(Error::Vars)?;
        tracing::info!(
            variables = resolved.values.len() + resolved.from_path.len(),
            requests = plan.fetches.len(),
            leases = resolved.leases.len(),
            "secrets resolved"
        );
        Ok(Session { login_client, client, token, resolved })
    }

    /// The token for the app when it asked for one (`VAULT_TOKEN=vault:login`).
    pub fn app_token<'a>(&'a self, config: &Config) -> Option<&'a SecretString> {
        config.auth.login_requested.then_some(&self.token.secret)
    }

    /// Whether daemon mode is needed to keep these secrets valid.
    pub fn needs_daemon(&self, config: &Config) -> Option<String> {
        if let Some(l) = self.resolved.leases.first() {
            return Some(format!("{} secret(s) have leases (e.g. {}, ttl {}s)", self.resolved.leases.len(), l.path, l.duration));
        }
        if config.auth.login_requested && self.token.renewable && self.token.lease_duration > 0 {
            return Some(format!("the app's vault:login token must be renewed (ttl {}s)", self.token.lease_duration));
        }
        None
    }
}
