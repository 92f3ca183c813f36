//! Starting the app for vault-env: command lookup, `exec` with a given environment, (daemon mode)
//! supervision as PID 1, and lease timing ([`renew`]: when to renew, retry or replace a lease).
//! This crate knows nothing about Vault: it takes a program, its arguments and a finished
//! environment, and leases as TTLs granted at an instant.

pub mod entry;
pub mod harden;
pub mod exec;
pub mod renew;
pub mod signals;
pub mod supervise;

pub use exec::{ExecError, exec, lookup};
pub use harden::harden;
pub use supervise::{Event, Options, Status, Supervisor};
