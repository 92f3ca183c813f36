//! vault-secrets-webhook: a Kubernetes mutating admission webhook, drop-in for Bank-Vaults'.
//!
//! The data flow, top to bottom:
//! 1. [`settings`]: the webhook's own environment (Bank-Vaults' names and defaults).
//! 2. [`server`]: HTTPS (certificate reloaded when its files change), `/healthz`, `/metrics`.
//! 3. [`admission`]: AdmissionReview in (v1 or v1beta1), AdmissionReview with a JSONPatch out.
//! 4. [`annotations`]: per-object settings from `vault.security.banzaicloud.io/*` ([`vault_addr`]
//!    guards the Vault address of objects the webhook resolves itself).
//! 5. [`mutate`]: reads what the decision needs ([`kube_api`], [`registry`] with [`ecr`] for
//!    Amazon ECR, [`vault`]; [`cache`] keeps and single-flights those reads), then
//! 6. [`pod`] (pods) or [`objects`] (Secrets, ConfigMaps, others): the pure mutation, written as
//!    JSONPatch text by [`patch`].

pub mod admission;
pub mod annotations;
pub mod cache;
pub mod ecr;
pub mod kube_api;
pub mod metrics;
pub mod mutate;
pub mod objects;
pub mod patch;
pub mod pod;
pub mod registry;
pub mod server;
pub mod settings;
pub mod vault;
pub mod vault_addr;
