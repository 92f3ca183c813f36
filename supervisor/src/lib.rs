//! Starting the app for vault-env: command lookup, `exec` with a given environment, and (daemon
//! mode) supervision as PID 1. This crate knows nothing about Vault: it takes a program, its
//! arguments and a finished environment.

pub mod exec;
pub mod renew;
pub mod signals;
pub mod supervise;

pub use exec::{ExecError, exec, lookup};
pub use supervise::{Event, Options, Status, Supervisor};
