//! Per-object settings from `vault.security.banzaicloud.io/*` annotations (and the same keys under
//! the newer `secrets-webhook.security.bank-vaults.io/` prefix), falling back to defaults this
//! module owns ([`vault::VaultDefaults`], [`pod::PodDefaults`], [`object::ObjectDefaults`]) and that
//! `settings.rs` fills from the webhook's environment. Pure: no I/O. Unknown keys are ignored; a
//! bad value is an error naming the annotation, through the core's one reader.

pub mod keys;
pub mod values;
pub mod role;
pub mod vault;
pub mod vault_addr;
pub mod pod;
pub mod object;
pub mod unhandled;
pub mod agent;
pub mod consul_template;

pub use keys::{MUTATE_LABEL, NEW_PREFIX, PREFIX, skipped};
pub use object::{ObjectConfig, ObjectDefaults};
pub use pod::{PodConfig, PodDefaults};
pub use unhandled::{PROVIDERS, unhandled};
pub use vault::{ObjectInfo, VaultDefaults, VaultTarget};
