# Static vault-env in a scratch image. vault-env is built alone (-p) so that no workspace feature
# leaks into it, with the small release profile (opt-level z, fat LTO, panic=abort, strip).
FROM rust:1.88-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN cargo build --release --locked -p vault-env --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/vault-env /vault-env

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /vault-env /usr/local/bin/vault-env
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/vault-env"]
