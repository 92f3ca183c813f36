#!/usr/bin/env bash
# Runs every test: the format and lint gate, the module-graph check, unit tests and the black-box
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
log "module graph: no import cycles; the webhook's pure code imports no I/O layer; only main reads settings"
python3 scripts/module-graph.py \
  --forbid 'webhook/src:annotations,mutate!admit,fetch,http,settings' --forbid 'webhook/src:*!settings' \
  src supervisor/src webhook/src
# The webhook's black-box tests run its binary, which `cargo test` alone does not build.
cargo build -p vault-env-webhook --bin vault-secrets-webhook --locked
cargo test --workspace --locked "$@"
