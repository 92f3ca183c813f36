#!/usr/bin/env bash
# Builds the two images we ship, from the Dockerfile's vault-env and vault-secrets-webhook stages,
# with podman, for linux/amd64 and linux/arm64, and one image index per program: the static (musl)
# binaries are built here with cargo (arm64 cross-built) and handed to the Dockerfile as
# BINARIES=prebuilt (its Rust build stage needs an image that cannot be pulled here). Also
# imports `localhost/vault-env-test-base`, a busybox root filesystem that the container tests
# build app images FROM (and the node's pods run), `localhost/vault-env-test-pause`, the node's
# pod sandbox, and the peers' images (OpenBao as the agent, consul-template). Prints the image sizes. Tags: localhost/vault-env:test,
# localhost/vault-secrets-webhook:test (override with VAULT_ENV_IMAGE_TAG).
. "$(dirname "$0")/lib.sh"
TAG=${VAULT_ENV_IMAGE_TAG:-test}
# Both platforms: linux/amd64 (x86_64-unknown-linux-musl) and linux/arm64
# (aarch64-unknown-linux-musl, cross-built: see cross_env in lib.sh).
PRE="$ROOT/target/prebuilt"
rm -rf "$PRE"
cross_env
for arch in amd64 arm64; do
  triple=$(rust_target "$arch")
  rustup target list --installed 2>/dev/null | grep -q "$triple" || rustup target add "$triple" >/dev/null || die "rustup target add $triple failed"
  log "building static binaries ($triple, release profiles as shipped)"
  cargo build --release --locked -q -p vault-env --target "$triple" --manifest-path "$ROOT/Cargo.toml"
  cargo build --profile release-webhook --locked -q -p vault-env-webhook --bin vault-secrets-webhook --target "$triple" --manifest-path "$ROOT/Cargo.toml"
  mkdir -p "$PRE/$arch/etc/ssl/certs"
  cp "$ROOT/target/$triple/release/vault-env" "$ROOT/target/$triple/release-webhook/vault-secrets-webhook" "$PRE/$arch/"
  cp /etc/ssl/certs/ca-certificates.crt "$PRE/$arch/etc/ssl/certs/"
done

podman_cmd() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }
# localhost/NAME:TAG is the amd64 image (what the tests run here), localhost/NAME:TAG-arm64 the
# arm64 one, and localhost/NAME:TAG-multiarch the image index of both, as it is published:
#   podman manifest push --all localhost/vault-env:TAG-multiarch docker://REGISTRY/vault-env:VERSION
for target in vault-env vault-secrets-webhook; do
  for arch in amd64 arm64; do
    tag="localhost/$target:$TAG"; [ "$arch" = amd64 ] || tag="$tag-$arch"
    log "podman build --platform linux/$arch --target $target (BINARIES=prebuilt)"
    podman_cmd build -q --platform "linux/$arch" --build-arg BINARIES=prebuilt --target "$target" -t "$tag" "$ROOT" >/dev/null \
      || die "podman build --target $target for linux/$arch failed"
  done
  index="localhost/$target:$TAG-multiarch"
  podman_cmd manifest exists "$index" && podman_cmd manifest rm "$index" >/dev/null
  podman_cmd manifest create "$index" >/dev/null || die "podman manifest create $index failed"
  podman_cmd manifest add "$index" "containers-storage:localhost/$target:$TAG" >/dev/null \
    && podman_cmd manifest add "$index" "containers-storage:localhost/$target:$TAG-arm64" >/dev/null \
    || die "podman manifest add to $index failed"
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
  for arch in amd64 arm64; do
    tag="localhost/$image:$TAG"; [ "$arch" = amd64 ] || tag="$tag-$arch"
    log "image $tag (linux/$(podman_cmd image inspect --format '{{.Architecture}}' "$tag")): $(podman_cmd image inspect --format '{{.Size}}' "$tag") bytes"
  done
done
