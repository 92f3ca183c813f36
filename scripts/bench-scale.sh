#!/usr/bin/env bash
# Lease keeping at scale (docs/benchmarks.md, "Lease keeping at scale"): one vault-env with 10, 100 and 1,000
# database leases and with 1,000 PKI certificates, then SUPERVISORS (default 1,000) vault-env daemons against one OpenBao with
# an outage in the middle, then as many started together and left to spread out. Prints the figures, writes
# .state/bench-scale.json and docs/bench-scale.png. About 20 minutes with the defaults; scripts/bench_scale.py says what the
# variables (LEASES, SUPERVISORS, STEADY, RUN1_*, RUN2_*, RUN3_*, OUTAGE*) do.
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore matplotlib 2>/dev/null \
  || python3 -m pip install --quiet --break-system-packages matplotlib || log "matplotlib could not be installed: no picture"
build_vault_env_for_bench
trap 'stop_pid "${MARIADB_PID:-}"' EXIT
start_mariadb
ulimit -n 65536 2>/dev/null || true
STATE="$STATE" BAO_BIN="$(bao_bin)" VAULT_ENV="$VE" BUILD="$BUILD" MARIADB_PORT="$MARIADB_PORT" \
  OUT_DIR="${OUT_DIR:-$ROOT/docs}" python3 "$ROOT/scripts/bench_scale.py"
