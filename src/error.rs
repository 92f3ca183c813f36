//! The errors a user sees, and the exit code each maps to.
//!
//! | code | meaning |
//! |------|---------|
//! | 64   | usage or configuration: bad `VAULT_*` value, malformed reference, unreadable token/JWT file |
//! | 65   | a secret, version or key is missing, or a value cannot be used (not text) |
//! | 69   | Vault unreachable (after retrying for `VAULT_CLIENT_TIMEOUT`) |
//! | 70   | internal: the async runtime or signal handling could not start, signals could no longer be read |
//! | 75   | daemon mode: a lease ended and could not be replaced |
//! | 77   | Vault refused: login rejected or permission denied |
//! | 126  | the command was found but cannot be executed |
//! | 127  | the command was not found |
//!
//! Messages name the variable, path or setting, and never a secret value.

use crate::auth::AuthError;
use crate::client::ClientError;
use crate::config::ConfigError;
use crate::resolve::{Cause, VarError};
use vault_env_supervisor::ExecError;

pub const EXIT_USAGE: u8 = 64;
pub const EXIT_DATA: u8 = 65;
pub const EXIT_UNAVAILABLE: u8 = 69;
pub const EXIT_INTERNAL: u8 = 70;
pub const EXIT_LEASE_ENDED: u8 = 75;
pub const EXIT_DENIED: u8 = 77;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    /// Not the user's doing (`EX_SOFTWARE`).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("invalid configuration")]
    Config(Vec<ConfigError>),
    #[error("variables could not be resolved")]
    Vars(Vec<VarError>),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Exec(#[from] ExecError),
}

fn client_exit_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Unreachable { .. } => EXIT_UNAVAILABLE,
        ClientError::Status { status: 400 | 401 | 403, .. } => EXIT_DENIED,
        ClientError::Status { status, .. } if *status >= 500 => EXIT_UNAVAILABLE,
        ClientError::Setup { .. } => EXIT_USAGE,
        _ => EXIT_DATA,
    }
}

fn cause_exit_code(c: &Cause) -> u8 {
    match c {
        Cause::Syntax(_) | Cause::NoTransitKey => EXIT_USAGE,
        Cause::Vault(e) => match client_exit_code(e) {
            EXIT_USAGE => EXIT_DATA,
            code => code,
        },
        _ => EXIT_DATA,
    }
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Config(_) => EXIT_USAGE,
            Error::Internal(_) => EXIT_INTERNAL,
            Error::Vars(errors) => {
                let codes: Vec<u8> = errors.iter().map(|e| cause_exit_code(&e.cause)).collect();
                [EXIT_UNAVAILABLE, EXIT_DENIED, EXIT_USAGE].into_iter().find(|c| codes.contains(c)).unwrap_or(EXIT_DATA)
            }
            Error::Client(e) => client_exit_code(e),
            // A cloud identity that cannot be had: the metadata service or the cloud's API.
            // The cloud answered and refused the identity: a credential or permission problem.
            Error::Auth(AuthError::Cloud { error, .. }) if error.is_refused() => EXIT_DENIED,
            Error::Auth(AuthError::Cloud { .. }) => EXIT_UNAVAILABLE,
            Error::Auth(e) => e.client_error().map_or(EXIT_USAGE, client_exit_code),
            Error::Exec(e) => e.exit_code(),
        }
    }

    /// The full report for stderr: one `vault-env: ` line per problem, then what happened.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let mut line = |s: &str| {
            out.push_str("vault-env: ");
            out.push_str(s);
            out.push('\n');
        };
        match self {
            Error::Config(errors) => {
                errors.iter().for_each(|e| line(&e.to_string()));
                line("invalid configuration; the app was not started (see vault-env --help)");
            }
            Error::Vars(errors) => {
                errors.iter().for_each(|e| line(&e.to_string()));
                line(&format!("{} variable(s) could not be resolved; the app was not started", errors.len()));
            }
            Error::Exec(e) => line(&e.to_string()),
            other => {
                line(&other.to_string());
                line("the app was not started");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(cause: Cause) -> VarError {
        VarError { var: "X".into(), reference: None, cause }
    }

    #[test]
    fn exit_code_prefers_unreachable_then_denied() {
        let down = Cause::Vault(ClientError::Unreachable { addr: "a".into(), cause: "refused".into() });
        let denied = Cause::Vault(ClientError::Status { status: 403, errors: vec![] });
        assert_eq!(Error::Vars(vec![var(Cause::PathNotFound), var(denied.clone()), var(down)]).exit_code(), 69);
        assert_eq!(Error::Vars(vec![var(Cause::PathNotFound), var(denied)]).exit_code(), 77);
        assert_eq!(Error::Vars(vec![var(Cause::PathNotFound)]).exit_code(), 65);
        assert_eq!(Error::Vars(vec![var(Cause::NoTransitKey), var(Cause::PathNotFound)]).exit_code(), 64);
    }
}
