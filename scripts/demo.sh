#!/usr/bin/env bash
# The main demo, from a fresh machine: install, build vault-env, start a dev OpenBao, store a
# secret, and run a command whose environment refers to it (exec mode); then what vault-env is
# for: daemon mode keeping a dynamic MariaDB credential alive across its max TTL (renewals, a
# rotation, no failed connection), in about 45 s (examples/mysql-dynamic). Stops what it started.
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"

log "building vault-env (release profile)"
cargo build --release --locked -p vault-env --manifest-path "$ROOT/Cargo.toml" -q
VAULT_ENV="$ROOT/target/release/vault-env"

trap 'stop_pid "${BAO_PID:-}"' EXIT
start_bao
bao_api POST secret/data/demo/db '{"data":{"username":"app","password":"s3cr3t-from-openbao"}}' >/dev/null
log "stored secret/data/demo/db {username, password}"

echo
echo "\$ DB_PASSWORD='vault:secret/data/demo/db#password' \\"
echo "  DB_URL='mysql://\${vault:secret/data/demo/db#username}:\${vault:secret/data/demo/db#password}@db:3306/app' \\"
echo "  vault-env sh -c 'echo ...'"
VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=root \
DB_PASSWORD='vault:secret/data/demo/db#password' \
DB_URL='mysql://${vault:secret/data/demo/db#username}:${vault:secret/data/demo/db#password}@db:3306/app' \
DB_USER_B64='vault:secret/data/demo/db#${.username | b64enc}' \
  "$VAULT_ENV" sh -c 'echo "DB_PASSWORD=$DB_PASSWORD"; echo "DB_URL=$DB_URL"; echo "DB_USER_B64=$DB_USER_B64"; echo "VAULT_TOKEN seen by the app: ${VAULT_TOKEN:-<none>}"'
echo
stop_pid "${BAO_PID:-}"; BAO_PID=
log "exec mode done ($(stat -c %s "$VAULT_ENV") byte binary); now daemon mode with dynamic MariaDB credentials"
DURATION=${DURATION:-45} bash "$ROOT/examples/mysql-dynamic/run.sh"
log "demo done"
