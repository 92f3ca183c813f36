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
log "cargo doc, warnings denied"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
log "module graph: no import cycles; the webhook's pure code imports no I/O layer; only main reads settings"
python3 scripts/module-graph.py \
  --forbid 'webhook/src:annotations,mutate!admit,fetch,http,settings' --forbid 'webhook/src:*!settings' \
  src supervisor/src webhook/src
bash "$ROOT/scripts/render-deploy.sh" --check
log "the fuzz targets compile (running them: docs/testing.md, Fuzzing)"
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
# The arm64 binaries, tested under emulation (qemu-aarch64-static): the core's and the supervisor's
# unit tests, then the black-box tests of exec mode, every reference form, daemon mode as PID 1 and
# the webhook, run against the arm64 vault-env and vault-secrets-webhook that scripts/images.sh
# built. Not under emulation: daemon mode outside PID 1 needs PR_SET_CHILD_SUBREAPER, which
# qemu-user does not emulate (EINVAL), nor PR_SET_THP_DISABLE (the webhook's), and --copy-to is
# compared with the binary the test runs (here a wrapper script).
if [ $# -eq 0 ] && [ $status -eq 0 ]; then
  cross_env
  log "arm64: unit tests under qemu-aarch64-static"
  cargo test --locked --target aarch64-unknown-linux-musl -p vault-env -p vault-env-supervisor --lib || status=$?
  emulated="$ROOT/target/arm64-emulated"
  mkdir -p "$emulated"
  for program in vault-env vault-secrets-webhook; do
    profile=release; [ "$program" = vault-env ] || profile=release-webhook
    printf '#!/bin/sh\nexec qemu-aarch64-static %s "$@"\n' "$ROOT/target/aarch64-unknown-linux-musl/$profile/$program" > "$emulated/$program"
    chmod +x "$emulated/$program"
  done
  log "arm64: black-box tests of the arm64 binaries under qemu-aarch64-static"
  VAULT_ENV_BIN="$emulated/vault-env" VAULT_SECRETS_WEBHOOK_BIN="$emulated/vault-secrets-webhook" \
    cargo test --locked --test integration -- exec:: resolve:: supervise:: webhook:: \
      --skip exec::copy_to_installs_a_working_binary --skip webhook::the_webhook_runs_without_transparent_huge_pages \
      --skip supervise::leftover_descendants_get_sigterm_when_asked --skip supervise::mode_is_chosen_automatically \
      --skip supervise::orphans_are_reaped_as_a_subreaper_when_not_pid_1 \
      --skip supervise::the_app_gets_a_scrubbed_environment_in_daemon_mode \
      --skip supervise::the_apps_environment_keeps_its_order_in_daemon_mode \
      --skip supervise::the_app_starts_with_no_blocked_signal_and_the_same_dispositions_as_in_exec_mode \
      --skip supervise::closed_standard_descriptors_are_opened_on_dev_null_in_daemon_mode \
      --skip supervise::a_closed_log_pipe_does_not_stop_daemon_mode || status=$?
fi
if [ -e "$node_dir.lock" ]; then flock "$node_dir.lock" true; fi
exit $status
