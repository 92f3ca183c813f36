//! Admission, one orchestrator per kind ([`pod`], [`object`]): read what the decision needs
//! through [`crate::fetch`], call the pure code of [`crate::mutate`], or say why not ([`Denial`]).

pub mod context;
pub mod pod;
pub mod object;

pub use context::{Admitted, Context, Denial};
pub use object::{mutate_object, object_name};
pub use pod::{mutate_pod, pod_name};
