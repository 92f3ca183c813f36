#!/usr/bin/env bash
# Runs every test: unit tests and the black-box tests against real servers (each test starts its
# own OpenBao on free loopback ports). Installs what is missing first.
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"
BAO_BIN=$(bao_bin)
export BAO_BIN
cd "$ROOT"
# The webhook's black-box tests run its binary, which `cargo test` alone does not build.
cargo build -p vault-env-webhook --bin vault-secrets-webhook --locked
cargo test --workspace --locked "$@"
