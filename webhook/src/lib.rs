//! vault-secrets-webhook: a Kubernetes mutating admission webhook, drop-in for Bank-Vaults'.
//!
//! The data path, top to bottom, one folder a layer:
//! 1. [`http`]: HTTPS (certificate reloaded when its files change), `/healthz`, `/metrics`, and the
//!    AdmissionReview wire format (v1 or v1beta1 in, a JSONPatch out).
//! 2. [`admit`]: one orchestrator per kind (pods; Secrets, ConfigMaps and other objects): reads
//!    what the decision needs through [`fetch`], then calls the pure code.
//! 3. [`annotations`]: per-object settings from `vault.security.banzaicloud.io/*` (pure).
//! 4. [`fetch`]: the I/O adapters: Kubernetes, Vault, image registries (with Amazon ECR), and the
//!    cache that keeps and single-flights their reads.
//! 5. [`mutate`]: the pure decision, object in, JSONPatch text out (kube-rs' `mutate()`); no
//!    `async` and no I/O in it.
//!
//! [`model`] is the part of a Pod the layers read (parsed from the review, nothing more).
//! [`settings`] reads the webhook's own environment once, at start-up, and hands each layer the
//! settings type it owns; [`metrics`] counts what every layer does.

pub mod http;
pub mod admit;
pub mod annotations;
pub mod fetch;
pub mod mutate;
pub mod model;
pub mod settings;
pub mod metrics;
