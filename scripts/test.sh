#!/usr/bin/env bash
# Runs every test: the format and lint gate, unit tests and the black-box
# tests against real servers (each test starts its own OpenBao on free loopback ports). Installs
# what is missing first.
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"
BAO_BIN=$(bao_bin)
export BAO_BIN
cd "$ROOT"
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The webhook's black-box tests run its binary, which `cargo test` alone does not build.
cargo build -p vault-env-webhook --bin vault-secrets-webhook --locked
cargo test --workspace --locked "$@"
