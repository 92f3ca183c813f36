# Two small static images from one build stage:
#   docker build --target vault-env -t ghcr.io/vault-env/vault-env:0.1.0 .
#   docker build --target vault-secrets-webhook -t ghcr.io/vault-env/vault-secrets-webhook:0.1.0 .
# Each binary is built alone (-p) so that no workspace feature leaks into the other, with the
# release profile (opt-level z, fat LTO, panic=abort, strip; the webhook with opt-level 3), for
# musl (fully static).
#
# Binaries built elsewhere (where the Rust image cannot be pulled): put static `vault-env`,
# `vault-secrets-webhook` and `etc/ssl/certs/ca-certificates.crt` in target/prebuilt/ and pass
# --build-arg BINARIES=prebuilt (scripts/images.sh does this; the build stage is then skipped).
ARG BINARIES=build

FROM rust:1.89-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN cargo build --release --locked -p vault-env --target x86_64-unknown-linux-musl \
 && cargo build --profile release-webhook --locked -p vault-env-webhook --bin vault-secrets-webhook --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/vault-env target/x86_64-unknown-linux-musl/release-webhook/vault-secrets-webhook /

FROM scratch AS prebuilt
COPY target/prebuilt/ /

FROM ${BINARIES} AS binaries

# The webhook: HTTPS only; its certificate comes from a mounted Secret (see deploy/).
FROM scratch AS vault-secrets-webhook
COPY --from=binaries /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binaries /vault-secrets-webhook /usr/local/bin/vault-secrets-webhook
USER 65534:65534
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/vault-secrets-webhook"]

# vault-env: the webhook's init container runs `vault-env --copy-to /vault/` (no shell needed);
# also usable as a Dockerfile ENTRYPOINT. Last, so a plain `docker build .` gives this image.
FROM scratch AS vault-env
COPY --from=binaries /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binaries /vault-env /usr/local/bin/vault-env
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/vault-env"]
