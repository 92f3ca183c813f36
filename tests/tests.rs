//! Black-box tests: the real `vault-env` binary against a real OpenBao dev server.
//! One test binary (ripgrep style); one module per area.

mod common;

/// Token file, jwt, approle, namespaces, vault:login, scrubbing.
mod auth;
/// The cloud login methods (aws-iam, aws-ec2, gcp-gce, gcp-iam, azure) and cert.
mod cloud;
/// Daemon mode with real leases: rotation, lease-end policies, outages, re-login.
mod daemon;
/// The rendered deployment manifests, read as the API server would.
mod deploy;
/// A real control plane (etcd, kube-apiserver, helm): the chart installed, the API server calling
/// the webhook, OpenBao checking pods' tokens with TokenReview.
mod kubernetes;
/// End to end on a real node (kubelet, containerd, scheduler, controller manager): the pods our
/// webhook mutates, started by Kubernetes itself.
mod e2e;
/// Exit codes, whether Vault is contacted, error texts, canary values.
mod errors;
/// vault-agent with the pod's own configuration, run as the real `bao agent`.
mod agent;
/// Exec mode: command lookup, argv, exit codes, SIGPIPE, delay.
mod exec;
/// The static builds' linker (scripts/link/rust-lld): vault-env's hot functions first.
mod link;
/// Every reference form against real engines.
mod resolve;
/// Daemon mode as PID 1, beside tini and dumb-init.
mod supervise;
/// Lease keeping at scale, small: many leases, many supervisors, checked from the audit log.
mod scale;
/// The shipped images in podman: vault-env as ENTRYPOINT and PID 1, the webhook's pod shape, the
/// webhook image.
mod containers;
/// Custom CA, skip-verify, server name, mTLS.
mod tls;
/// The security review's findings on vault-env, each shown fixed.
mod security;
/// vault-secrets-webhook over HTTPS: AdmissionReviews, Kubernetes reads, registry lookups.
mod webhook;
/// vault-secrets-webhook resolving references in Secrets, ConfigMaps and custom objects.
mod webhook_objects;
