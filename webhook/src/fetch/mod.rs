//! The I/O adapters: each owns its client, its cache and its metric calls, and returns the value
//! types the pure code takes.

pub mod cache;
pub mod kube;
pub mod registry;
pub mod vault;
