//! vault-env: resolve `vault:` references in the environment from Vault/OpenBao and start the app.
//!
//! The pipeline, top to bottom:
//! 1. [`config`]: `VAULT_*` settings from the environment (all bad variables reported at once).
//! 2. [`mod@reference`] + [`template`]: which variables hold references, parsed before any I/O.
//! 3. [`auth`]: a token from a file, the environment, or a login (jwt/kubernetes, approle, cert,
//!    and the clouds' identities through [`cloud`]).
//! 4. [`resolve`]: one concurrent read per distinct path, transit batches, rendering.
//! 5. [`child_env`]: the app's environment, with vault-env's own settings removed.
//! 6. [`session`]: what both modes hold (client, token, resolved secrets); then
//!    `vault_env_supervisor` execs the app, or in daemon mode [`daemon`] spawns and supervises it
//!    and [`lease`] keeps the token and leases renewed.

pub mod cli;
pub mod config;
pub mod reference;
pub mod template;
pub mod auth;
pub mod cloud;
pub mod client;
pub mod resolve;
pub mod child_env;
pub mod session;
pub mod daemon;
pub mod lease;
pub mod secret;
pub mod error;
pub mod logging;

pub use error::Error;
pub use secret::SecretString;
