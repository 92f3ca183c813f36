//! One connection's life, bounded: how many are open at once, how long the headers, a request and
//! an idle keep-alive may take, how many HTTP/2 streams run at once, and whether the caller showed
//! a client certificate that `TLS_CLIENT_CA_FILE` verified ([`Caller`]). A slow or idle client
//! holds a connection for seconds, not forever: a few such clients could otherwise take every
//! connection the API server needs.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The limits of the HTTPS listener.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Admission requests processed at once (each may buffer up to `body_limit`).
    pub max_requests: usize,
    /// HTTP/2 streams per connection.
    pub max_streams: u32,
    /// Request headers must arrive within this (HTTP/1; it also ends idle HTTP/1 keep-alives).
    pub header_read_timeout: Duration,
    /// A whole request, body included: just above the API server's `timeoutSeconds`.
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Admission request bodies: the API server's own request limit is 3 MiB, and a review of an
    /// UPDATE carries the object twice.
    pub body_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_requests: 16,
            max_streams: 32,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(12),
            idle_timeout: Duration::from_secs(90),
            body_limit: 4 * 1024 * 1024,
        }
    }
}

/// KiB of request bodies buffered at once, whatever the number of requests: twenty stalled
/// 4 MB uploads held 127 MB (buffers grow while a body arrives), against the chart's 128 MiB
/// limit; with this budget, 74 MB (debug build). Pods and most objects are a few KiB, so this
/// only ever queues the largest.
pub const BODY_BUDGET_KIB: u32 = 16 * 1024;

/// Whether the caller presented a client certificate that the configured CA verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub verified: bool,
}

/// Requests in flight and the time of the last one, per connection.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Idle for at least `timeout`: nothing in flight, and the last request ended that long ago.
    pub fn idle_for(&self, timeout: Duration) -> bool {
        let since = self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        self.in_flight.load(Ordering::Relaxed) == 0 && since >= timeout
    }
}

/// The admission routes' guard: a verified caller when one is required, then a request slot, then
/// the whole request (body read included) within `request_timeout`, marked in flight on its
/// connection ([`Activity`]) while it runs. (Probes and scrapes do not keep a connection open.)
#[derive(Clone)]
pub struct Admission {
    pub require_client_cert: bool,
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Request bodies buffered at once, in KiB ([`BODY_BUDGET_KIB`]): each request takes its
    /// `Content-Length` (or the body limit when it does not say) before its body is read.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    pub timeout: Duration,
    pub body_limit: usize,
}

async fn discard(mut body: axum::body::Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
        if seen > limit {
            break;
        }
    }
}

pub async fn guard(axum::extract::State(admission): axum::extract::State<Admission>, request: Request, next: Next) -> Response {
    let verified = request.extensions().get::<Caller>().is_some_and(|c| c.verified);
    if admission.require_client_cert && !verified {
        // Read and drop the body first (bounded in size and time, never buffered): an HTTP/2
        // client still sending would otherwise see a reset stream instead of the answer.
        let _ = tokio::time::timeout(admission.timeout, discard(request.into_body(), admission.body_limit)).await;
        return refuse(StatusCode::UNAUTHORIZED, "a client certificate signed by TLS_CLIENT_CA_FILE is required");
    }
    let deadline = tokio::time::Instant::now() + admission.timeout;
    // A free slot is the common case: no timer for it.
    let _slot = match admission.slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => match tokio::time::timeout_at(deadline, admission.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many admission requests in flight"),
        },
    };
    let announced = request.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let kib = u32::try_from(announced.unwrap_or(admission.body_limit).min(admission.body_limit).div_ceil(1024)).unwrap_or(u32::MAX).max(1);
    let _body = match admission.body_budget.clone().try_acquire_many_owned(kib) {
        Ok(permit) => permit,
        Err(_) => match tokio::time::timeout_at(deadline, admission.body_budget.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => permit,
            _ => return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many large admission requests in flight"),
        },
    };
    let _in_flight = request.extensions().get::<Arc<Activity>>().cloned().map(InFlight::new);
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refuse(StatusCode::REQUEST_TIMEOUT, "the request took too long"),
    }
}

/// A request in flight on its connection, until dropped (also when an HTTP/2 stream is reset and
/// the request's future dropped half-way).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": status.as_u16()});
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Logs failed accepts (out of file descriptors, …) at most once per interval, with a count,
/// instead of once per retry.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
    /// The current back-off before the next accept.
    pub backoff: Duration,
}

impl AcceptErrors {
    const EVERY: Duration = Duration::from_secs(10);

    pub fn failed(&mut self, error: &std::io::Error) {
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        match self.last_logged {
            Some(t) if t.elapsed() < Self::EVERY => self.suppressed += 1,
            _ => {
                tracing::warn!(suppressed = self.suppressed, "accept failed: {error}");
                self.last_logged = Some(Instant::now());
                self.suppressed = 0;
            }
        }
    }

    pub fn succeeded(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_log_once_per_interval() {
        let mut errors = AcceptErrors::default();
        let e = std::io::Error::other("Too many open files");
        for _ in 0..100 {
            errors.failed(&e);
        }
        assert_eq!(errors.suppressed, 99, "one line, then a count");
        assert_eq!(errors.backoff, Duration::from_secs(1), "capped back-off");
        errors.succeeded();
        assert_eq!(errors.backoff, Duration::ZERO);
    }

    #[test]
    fn idle_only_with_nothing_in_flight() {
        let a = Activity::new();
        assert!(a.idle_for(Duration::ZERO));
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        assert!(!a.idle_for(Duration::ZERO), "a request in flight");
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
        a.touch();
        assert!(!a.idle_for(Duration::from_secs(60)));
    }
}
