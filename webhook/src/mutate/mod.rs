//! The pure decision: an object and its settings in, a JSONPatch out (kube-rs' `mutate()`). Nothing
//! in this folder is `async` or does I/O; what it needs from Kubernetes or a registry is read by
//! [`crate::admit`] and passed in.

pub mod object;
pub mod patch;
pub mod pod;
pub mod pod_parts;
pub mod agent;
pub mod consul_template;
