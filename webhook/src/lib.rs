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

/// The unit tests run on the webhook's allocator (mimalloc), and count what each thread allocates.
#[cfg(test)]
pub(crate) mod test_alloc {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    }

    fn count(bytes: usize) {
        let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
    }

    /// The bytes this thread has allocated so far (growth by `realloc` included; frees not
    /// subtracted).
    pub fn allocated() -> usize {
        ALLOCATED.try_with(Cell::get).unwrap_or(0)
    }

    struct Counting;

    // SAFETY: every call goes to mimalloc unchanged; counting touches a thread-local integer only.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size.saturating_sub(layout.size()));
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;
}
