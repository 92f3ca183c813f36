#!/usr/bin/env bash
# Builds the two images we ship, from the Dockerfile's vault-env and vault-secrets-webhook stages,
# with podman: the static (musl) binaries are built here with cargo and handed to the Dockerfile
# as BINARIES=prebuilt (its Rust build stage needs an image that cannot be pulled here). Also
# imports `localhost/vault-env-test-base`, a busybox root filesystem that the container tests
# build app images FROM (and the node's pods run), `localhost/vault-env-test-pause`, the node's
# pod sandbox, and the peers' images (OpenBao as the agent, consul-template). Prints the image sizes. Tags: localhost/vault-env:test,
# localhost/vault-secrets-webhook:test (override with VAULT_ENV_IMAGE_TAG).
. "$(dirname "$0")/lib.sh"
TAG=${VAULT_ENV_IMAGE_TAG:-test}
MUSL=x86_64-unknown-linux-musl
rustup target list --installed 2>/dev/null | grep -q "$MUSL" || rustup target add "$MUSL" >/dev/null || die "rustup target add $MUSL failed"
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
log "building static binaries ($MUSL, release profiles as shipped)"
cargo build --release --locked -q -p vault-env --target "$MUSL" --manifest-path "$ROOT/Cargo.toml"
cargo build --profile release-webhook --locked -q -p vault-env-webhook --bin vault-secrets-webhook --target "$MUSL" --manifest-path "$ROOT/Cargo.toml"
PRE="$ROOT/target/prebuilt"
rm -rf "$PRE" && mkdir -p "$PRE/etc/ssl/certs"
cp "$ROOT/target/$MUSL/release/vault-env" "$ROOT/target/$MUSL/release-webhook/vault-secrets-webhook" "$PRE/"
cp /etc/ssl/certs/ca-certificates.crt "$PRE/etc/ssl/certs/"

podman_cmd() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }
for target in vault-env vault-secrets-webhook; do
  log "podman build --target $target (BINARIES=prebuilt)"
  podman_cmd build -q --build-arg BINARIES=prebuilt --target "$target" -t "localhost/$target:$TAG" "$ROOT" >/dev/null \
    || die "podman build --target $target failed"
done
# The base for app images in the container tests: busybox (static) and nothing else.
base=$(mktemp -d)
mkdir -p "$base/bin" "$base/tmp" && chmod 1777 "$base/tmp"
cp "$(command -v busybox)" "$base/bin/busybox"
for applet in sh sleep cat echo env kill ps trap true false id ls; do ln -sf busybox "$base/bin/$applet"; done
tar -C "$base" -c . | podman_cmd import -q - "localhost/vault-env-test-base:$TAG" >/dev/null || die "podman import failed"
rm -rf "$base"
# Images of the peers the end-to-end tests' pods run: OpenBao's `bao` as `vault` (the agent image;
# OpenBao's CLI takes Vault's `agent` arguments) and consul-template (scripts/go-tools.sh), each on
# the busybox base, the binary as ENTRYPOINT. Rebuilt only when the binary changes.
peer_image() { # peer_image NAME BINARY PATH-IN-IMAGE
  local image="localhost/vault-env-test-$1:$TAG" stamp; stamp=$(stat -c %s-%Y "$2")
  [ "$(podman_cmd image inspect --format '{{index .Labels "source"}}' "$image" 2>/dev/null)" = "$stamp" ] && return 0
  local root; root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" && chmod 1777 "$root/tmp"
  cp "$(command -v busybox)" "$root/bin/busybox"
  for applet in sh cat ls sleep env id; do ln -sf busybox "$root/bin/$applet"; done
  strip -o "$root$3" "$2" 2>/dev/null || cp "$2" "$root$3"
  tar -C "$root" -c . | podman_cmd import -q --change "ENTRYPOINT [\"$3\"]" --change "LABEL source=$stamp" --change "ENV PATH=/bin" - "$image" >/dev/null \
    || die "podman import $image failed"
  rm -rf "$root"
}
peer_image bao "$(bao_bin)" /bin/vault
ct=$(tool_path consul-template)
[ -x "$ct" ] || bash "$ROOT/scripts/go-tools.sh"
peer_image consul-template "$ct" /bin/consul-template
# The pod sandbox image of the end-to-end tests' node (scripts/node.sh): a static pause program.
pause=$(mktemp -d)
musl-gcc -static -Os -s -o "$pause/pause" "$ROOT/tests/fixtures/pause/pause.c" || die "building pause failed"
tar -C "$pause" -c pause | podman_cmd import -q --change 'ENTRYPOINT ["/pause"]' - "localhost/vault-env-test-pause:$TAG" >/dev/null \
  || die "podman import pause failed"
rm -rf "$pause"
for image in vault-env vault-secrets-webhook; do
  log "image localhost/$image:$TAG: $(podman_cmd image inspect --format '{{.Size}}' "localhost/$image:$TAG") bytes"
done
