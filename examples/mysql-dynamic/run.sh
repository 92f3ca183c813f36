#!/usr/bin/env bash
# MySQL (MariaDB) dynamic credentials under vault-env daemon mode, in one command:
#   examples/mysql-dynamic/run.sh            (DURATION=120 by default, in seconds)
# Installs and starts OpenBao (dev) and MariaDB, enables the database engine with
# mysql-database-plugin and a role with ttl 10s / max_ttl 30s, logs in with AppRole, and runs
# app.sh under vault-env. The output shows renewals, rotations (a new user every ~30 s) and
# must show no FAIL line. Everything is stopped at the end.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../scripts/lib.sh"
DURATION=${DURATION:-120}
bash "$ROOT/scripts/install.sh"
log "building vault-env (release profile)"
cargo build --release --locked -q -p vault-env --manifest-path "$ROOT/Cargo.toml"

trap 'stop_pid "${BAO_PID:-}"; stop_pid "${MARIADB_PID:-}"' EXIT
start_bao
start_mariadb

log "enabling the database engine (ttl 10s, max_ttl 30s) and AppRole login"
bao_api POST sys/mounts/database '{"type":"database"}' >/dev/null
bao_api POST database/config/mariadb "{\"plugin_name\":\"mysql-database-plugin\",
  \"connection_url\":\"{{username}}:{{password}}@tcp(127.0.0.1:$MARIADB_PORT)/\",
  \"username\":\"root\",\"password\":\"rootpass\",\"allowed_roles\":[\"app\"]}" >/dev/null
bao_api POST database/roles/app '{"db_name":"mariadb",
  "creation_statements":["CREATE USER '"'"'{{name}}'"'"'@'"'"'%'"'"' IDENTIFIED BY '"'"'{{password}}'"'"';","GRANT SELECT ON *.* TO '"'"'{{name}}'"'"'@'"'"'%'"'"';"],
  "default_ttl":"10s","max_ttl":"30s"}' >/dev/null
bao_api PUT sys/policies/acl/app "$(python3 -c 'import json,sys; print(json.dumps({"policy": open(sys.argv[1]).read()}))' "$HERE/policy.hcl")" >/dev/null
bao_api POST sys/auth/approle '{"type":"approle"}' >/dev/null
bao_api POST auth/approle/role/app '{"token_policies":["app"],"token_ttl":"1m","token_max_ttl":"10m"}' >/dev/null
ROLE_ID=$(bao_api GET auth/approle/role/app/role-id | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["role_id"])')
SECRET_ID=$(bao_api POST auth/approle/role/app/secret-id '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["secret_id"])')

OUT="$STATE/mysql-dynamic.log"
log "running app.sh under vault-env for ${DURATION}s (log: $OUT)"
echo
env -i PATH="$PATH" HOME="$STATE" \
  VAULT_ADDR="$VAULT_ADDR" VAULT_AUTH_METHOD=approle VAULT_ROLE_ID="$ROLE_ID" VAULT_SECRET_ID="$SECRET_ID" \
  VAULT_ENV_DAEMON=true VAULT_ENV_STOP_TIMEOUT=5s \
  DB_PORT="$MARIADB_PORT" \
  DB_USER='vault:database/creds/app#username' \
  DB_PASSWORD='vault:database/creds/app#password' \
  timeout -s TERM "$DURATION" "$ROOT/target/release/vault-env" "$HERE/app.sh" 2>&1 | tee "$OUT" || true
echo
ok=$(grep -c ' OK ' "$OUT" || true)
fail=$(grep -c ' FAIL ' "$OUT" || true)
users=$(grep ' OK ' "$OUT" | awk '{print $NF}' | sort -u | wc -l)
renewals=$(grep -c 'lease renewed' "$OUT" || true)
rotations=$(grep -c 'restarting the app with new secrets' "$OUT" || true)
log "summary: $ok OK, $fail FAIL, $users distinct database users, $renewals lease renewals, $rotations rotations"
[ "$fail" -eq 0 ] || die "$fail connection(s) failed"
[ "$users" -ge 2 ] || die "credentials were never rotated"
