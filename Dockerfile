# Two small static images from one build stage:
#   docker build --target vault-env -t ghcr.io/vault-env/vault-env:0.1.0 .
#   docker build --target vault-secrets-webhook -t ghcr.io/vault-env/vault-secrets-webhook:0.1.0 .
# Each binary is built alone (-p) so that no workspace feature leaks into the other, with the
# release profile (opt-level z, fat LTO, panic=abort, strip; the webhook with opt-level 3), for
# musl (fully static).
#
# Both platforms: add --platform linux/amd64 or linux/arm64 (one image each; `podman manifest` or
# `docker buildx build --platform linux/amd64,linux/arm64` makes the image index).
#
# Binaries built elsewhere (where the Rust image cannot be pulled): put static `vault-env`,
# `vault-secrets-webhook` and `etc/ssl/certs/ca-certificates.crt` in target/prebuilt/ARCH/ (amd64,
# arm64) and pass --build-arg BINARIES=prebuilt (scripts/images.sh does this; the build stage is
# then skipped).
ARG BINARIES=build

# The build stage runs on the build machine's platform and cross-compiles for the target's
# (`--platform linux/arm64`: Debian's aarch64 gcc for ring's C parts, rust-lld to link), with the
# Rust the tests run (1.89 builds too; from 1.93 its musl also takes packed relocations).
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
WORKDIR /src
COPY . .
# Both targets link with rust-lld through scripts/link/rust-lld (.cargo/config.toml): vault-env's
# hot functions laid out together, relative relocations packed (less of the binary is resident).
ENV CC_x86_64_unknown_linux_musl=musl-gcc CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
RUN case "${TARGETARCH:-amd64}" in amd64) t=x86_64-unknown-linux-musl;; arm64) t=aarch64-unknown-linux-musl;; \
      *) echo "unsupported architecture $TARGETARCH" >&2; exit 1;; esac \
 && cargo build --release --locked -p vault-env --target "$t" \
 && cargo build --profile release-webhook --locked -p vault-env-webhook --bin vault-secrets-webhook --target "$t" \
 && cp "target/$t/release/vault-env" "target/$t/release-webhook/vault-secrets-webhook" /

# Prebuilt: target/prebuilt/ARCH/ (scripts/images.sh fills amd64 and arm64).
FROM scratch AS prebuilt
ARG TARGETARCH
COPY target/prebuilt/${TARGETARCH:-amd64}/ /

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
