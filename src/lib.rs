//! vault-env: resolve `vault:` references in the environment from Vault/OpenBao and start the app.
//!
//! The pipeline, top to bottom:
//! 1. [`config`]: `VAULT_*` settings from the environment (all bad variables reported at once).
//! 2. [`reference`] + [`template`]: which variables hold references, parsed before any I/O.
//! 3. [`auth`]: a token from a file, the environment, or a login (jwt/kubernetes, approle).
//! 4. [`resolve`]: one concurrent read per distinct path, transit batches, rendering.
//! 5. [`child_env`]: the app's environment, with vault-env's own settings removed.
//! 6. `vault_env_supervisor`: exec (or, in daemon mode, spawn and supervise) the app.

pub mod auth;
pub mod child_env;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod error;
pub mod logging;
pub mod reference;
pub mod resolve;
pub mod secret;
pub mod template;

pub use error::Error;
pub use secret::SecretString;
