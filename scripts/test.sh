#!/usr/bin/env bash
# Runs every test: the format and lint gate, the module-graph check, the rendered-manifest check,
# unit tests and the black-box tests against real servers that each test starts on free loopback
# ports (OpenBao, MariaDB, docker-registry, a Kubernetes control plane built from its Go modules,
# podman running the images we ship, and a one-node cluster with a real kubelet and containerd
# running the pods our webhook mutates: scripts/node.sh). Installs and builds what is missing first.
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"
# kube-apiserver, etcd and helm from their Go modules (cached by version; built when missing).
bash "$ROOT/scripts/go-tools.sh"
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
bash "$ROOT/scripts/render-deploy.sh" --check
log "the fuzz targets compile (running them: README, Fuzzing)"
cargo check --manifest-path fuzz/Cargo.toml --bins --locked --quiet
# The webhook's black-box tests run its binary, which `cargo test` alone does not build.
cargo build -p vault-env-webhook --bin vault-secrets-webhook --locked
# The images the container tests run (static binaries, the Dockerfile's stages, with podman).
bash "$ROOT/scripts/images.sh"
# The end-to-end tests' node (scripts/node.sh serve) is torn down when the test process exits;
# wait for that to finish, whatever the tests' result, so that nothing is left running.
node_dir=${VAULT_ENV_NODE_DIR:-${TMPDIR:-/tmp}/vault-env-node}
status=0
cargo test --workspace --locked "$@" || status=$?
if [ -e "$node_dir.lock" ]; then flock "$node_dir.lock" true; fi
exit $status
