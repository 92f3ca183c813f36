#!/usr/bin/env bash
# Benchmarks vault-env side by side with its peers on this machine and prints the figures:
#   1. start-to-exec time with 10 secrets (10 distinct KV paths) from a local OpenBao, and the CPU
#      OpenBao and vault-env spend on a start: spread over every core, the floor of a start here
#   2. daemon-mode supervisor overhead with no secrets, versus tini, dumb-init and catatonit (and
#      against tini in ROUNDS rounds back to back, default 3: the target is checked on their median)
#   3. daemon-mode RSS with 10 live database leases, versus OpenBao's own `bao agent` exec mode
#      (and vault-env's over HTTPS, as in production, where its TLS code runs too)
#   4. the stripped release binary's size
# Targets (issue 26, performance): <= 3 ms to exec with 10 secrets, <= 1.2x tini's overhead,
# RSS <= 2 MiB as shipped (static musl) or <= 3.5 MiB (glibc), <= 3 MB binary. Timings use
# hyperfine (-N: no shell), 100 runs after 5 warm-ups. It builds vault-env as shipped (static musl;
# BENCH_LIBC=glibc for the glibc build), or measures BENCH_VAULT_ENV=PATH (another commit's build).
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"
apt_install hyperfine catatonit
build_vault_env_for_bench
B="$STATE/bench"; rm -rf "$B"; mkdir -p "$B"

trap 'stop_pid "${BAO_PID:-}"; stop_pid "${TLS_PID:-}"; stop_pid "${MARIADB_PID:-}"; stop_pid "${AGENT_PID:-}"; stop_pid "${VE_PID:-}"' EXIT
start_bao
export VAULT_ADDR VAULT_TOKEN=root

# mean, stddev and median in ms of one hyperfine command
WARMUP=5 RUNS=100
hf() { # NAME CMD...
  local name=$1; shift
  hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$B/$name.json" "$@" >/dev/null 2>&1 || die "hyperfine $name failed"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f %.2f %.2f" % (r["mean"]*1000, r["stddev"]*1000, r["median"]*1000))' "$B/$name.json"
}

# --- 1. exec with 10 secrets
# put_secrets : the 10 secrets at VAULT_ADDR (bao_api), one path each.
put_secrets() {
  for i in $(seq 0 9); do
    bao_api POST "secret/data/bench/s$i" "{\"data\":{\"value\":\"secret-$i\"}}" >/dev/null
  done
}
put_secrets
for i in $(seq 0 9); do export "SECRET_$i=vault:secret/data/bench/s$i#value"; done
read -r true_ms true_sd _ < <(hf true true)
# CPU time of a process so far, in ms (utime + stime)
cpu_ms() { awk -v tck="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1000 / tck}' "/proc/$1/stat"; }
bao_cpu0=$(cpu_ms "$BAO_PID")
read -r exec_ms exec_sd exec_med < <(hf exec10 "$VE true")
# The floor of a start on this machine: OpenBao's CPU and vault-env's (the app's `true` included)
# for one start, spread over every core. OpenBao's is per run of hyperfine's, warm-ups included.
bao_cpu=$(python3 -c 'import sys; print("%.3f" % (int(sys.argv[1]) / int(sys.argv[2])))' "$(( $(cpu_ms "$BAO_PID") - bao_cpu0 ))" "$((WARMUP + RUNS))")
ve_cpu=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f" % ((r["user"] + r["system"]) * 1000))' "$B/exec10.json")
# The floors beside it: vault-env with nothing to resolve (process start to exec), and a generic
# client fetching the same 10 paths (curl, one process, all at once over HTTP/1.1).
urls=""; for i in $(seq 0 9); do urls+=" -o /dev/null $VAULT_ADDR/v1/secret/data/bench/s$i"; done
read -r curl_ms curl_sd _ < <(hf curl10 "curl -s -H X-Vault-Token:root --parallel --parallel-immediate$urls")
# The same over HTTPS, as Vault is reached in production: a second OpenBao in -dev-tls mode, which
# makes its own CA; every new connection is a TLS handshake, and curl's is beside it again.
start_bao_tls "$B/tls"
in_tls put_secrets
read -r tls_ms tls_sd tls_med < <(in_tls hf exec10tls "$VE true")
read -r tlscurl_ms _ _ < <(hf curl10tls "curl -s --cacert $TLS_CA -H X-Vault-Token:root --parallel --parallel-immediate${urls//$VAULT_ADDR/$TLS_ADDR}")
for i in $(seq 0 9); do unset "SECRET_$i"; done
read -r none_ms none_sd _ < <(hf exec0 "$VE true")

# --- 2. supervisor overhead, no secrets
read -r ve_ms ve_sd _ < <(VAULT_ENV_DAEMON=true hf daemon "$VE true")
read -r veq_ms veq_sd _ < <(VAULT_ENV_DAEMON=true VAULT_LOG_LEVEL=warn hf daemonquiet "$VE true")
read -r tini_ms tini_sd _ < <(hf tini "tini -s -- true")
read -r tinis_ms tinis_sd _ < <(hf tinistatic "tini-static -s -- true")
read -r dumb_ms dumb_sd _ < <(hf dumb "dumb-init true")
read -r cat_ms cat_sd _ < <(hf catatonit "catatonit -- true")
# The ratio to tini, in ROUNDS rounds (default 3) of `true`, tini and vault-env back to back: each
# round's overheads are measured within seconds of each other, where the runs above are minutes
# apart (tini's own overhead moves by up to 0.4 ms between runs here). The target is checked on
# the rounds' median.
ratios=""
for round in $(seq "${ROUNDS:-3}"); do
  VAULT_ENV_DAEMON=true hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$B/round$round.json" true "tini -s -- true" "$VE true" \
    >/dev/null 2>&1 || die "hyperfine round $round failed"
  ratios+=" $(python3 -c 'import json,sys; t,i,v=(r["mean"] for r in json.load(open(sys.argv[1]))["results"]); print("%.3f" % ((v-t)/(i-t)))' "$B/round$round.json")"
done

# --- 3. RSS with 10 live leases
start_mariadb
database_roles 1h 24h
in_tls database_roles 1h 24h
agent_tpl=""
for i in $(seq 0 9); do
  export "DB_USER_$i=vault:database/creds/app$i#username"
  agent_tpl+="env_template \"DB_USER_$i\" {
  contents = \"{{ with secret \\\"database/creds/app$i\\\" }}{{ .Data.username }}{{ end }}\"
}
"
done
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# what of it is the binary's and the libraries' pages (file) and what is the process's own (anon)
rss_split() { awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a "/" f}' "/proc/$1/status"; }

VAULT_ENV_DAEMON=true "$VE" sleep 600 >"$B/ve.log" 2>&1 &
VE_PID=$!
wait_for 30 "vault-env to start the app" grep -q 'started the app' "$B/ve.log"
sleep 2
ve_leases=$(grep -c 'tracking lease' "$B/ve.log" || true)
ve_rss=$(rss_kib "$VE_PID")
ve_split=$(rss_split "$VE_PID")
stop_pid "$VE_PID"
# the same over HTTPS
VAULT_ADDR="$TLS_ADDR" VAULT_CACERT="$TLS_CA" VAULT_ENV_DAEMON=true "$VE" sleep 600 >"$B/ve-tls.log" 2>&1 &
VE_PID=$!
wait_for 30 "vault-env to start the app over HTTPS" grep -q 'started the app' "$B/ve-tls.log"
sleep 2
[ "$(grep -c 'tracking lease' "$B/ve-tls.log" || true)" = "$ve_leases" ] || die "vault-env over HTTPS does not hold $ve_leases leases (log: $B/ve-tls.log)"
ve_tls_rss=$(rss_kib "$VE_PID")
stop_pid "$VE_PID"; VE_PID=
stop_pid "$TLS_PID"; TLS_PID=
for i in $(seq 0 9); do unset "DB_USER_$i"; done

printf 'root' > "$B/token"
cat > "$B/agent.hcl" <<EOF
vault { address = "$VAULT_ADDR" }
auto_auth {
  method {
    type = "token_file"
    config = { token_file_path = "$B/token" }
  }
}
$agent_tpl
exec {
  command = ["sleep", "600"]
  restart_on_secret_changes = "always"
}
EOF
HOME="$B" "$(bao_bin)" agent -config="$B/agent.hcl" >"$B/agent.log" 2>&1 &
AGENT_PID=$!
wait_for 30 "bao agent to start its child" sh -c "pgrep -P $AGENT_PID sleep"
sleep 2
agent_rss=$(rss_kib "$AGENT_PID")

# --- 4. binary size
size=$(stat -c %s "$VE")

python3 - "$true_ms" "$exec_ms" "$exec_sd" "$ve_ms" "$ve_sd" "$tini_ms" "$tini_sd" "$dumb_ms" "$cat_ms" \
  "$ve_rss" "$agent_rss" "$ve_leases" "$size" "$tinis_ms" "$BUILD" "$veq_ms" "$none_ms" "$curl_ms" "$ve_split" "$exec_med" \
  "$tls_ms" "$tls_sd" "$tls_med" "$tlscurl_ms" "$ve_tls_rss" "$ratios" "$bao_cpu" "$ve_cpu" <<'PY'
import sys
a = sys.argv[1:]
true_ms, exec_ms, exec_sd, ve_ms, ve_sd, tini_ms, tini_sd, dumb_ms, cat_ms = map(float, a[:9])
ve_rss, agent_rss, leases, size = int(a[9]), int(a[10]), int(a[11]), int(a[12])
tinis_ms, build, veq_ms = float(a[13]), a[14], float(a[15])
none_ms, curl_ms = float(a[16]), float(a[17])
anon_kib, file_kib = map(int, a[18].split("/"))
exec_med = float(a[19])
tls_ms, tls_sd, tls_med, tlscurl_ms = map(float, a[20:24])
ve_tls_rss = int(a[24])
rounds = [float(r) for r in a[25].split()]
bao_cpu, ve_cpu = float(a[26]), float(a[27])
cores = __import__("os").cpu_count()
static = build.startswith("static")
over = lambda m: m - true_ms
ok = lambda c: "ok" if c else "MISSED"
print()
print("vault-env benchmark (this machine: %s cores; vault-env build: %s)" % (__import__("os").cpu_count(), build))
print("-" * 78)
print("1. start to exec, 10 secrets from a local OpenBao: %.2f ms (sd %.2f, median %.2f)   target <= 3 ms: %s" % (exec_ms, exec_sd, exec_med, ok(exec_ms <= 3)))
print("   (plain `true` alone: %.2f ms; vault-env with nothing to resolve: %.2f ms; curl fetching the" % (true_ms, none_ms))
print("   same 10 paths at once, and starting nothing after: %.2f ms)" % curl_ms)
print("   CPU per start: OpenBao %.2f ms, vault-env %.2f ms (with the app's `true`): no start can take" % (bao_cpu, ve_cpu))
print("   less than %.2f ms on %d cores" % ((bao_cpu + ve_cpu) / cores, cores))
print("   over HTTPS (OpenBao -dev-tls, a TLS handshake per new connection): %.2f ms (sd %.2f, median %.2f);" % (tls_ms, tls_sd, tls_med))
print("   curl, the same 10 paths at once over HTTPS: %.2f ms" % tlscurl_ms)
print("2. supervisor, no secrets (mean wall time of `INIT true`, overhead over `true`):")
print("   vault-env daemon %.2f ms (+%.2f)   tini %.2f ms (+%.2f)   tini-static %.2f ms (+%.2f)"
      % (ve_ms, over(ve_ms), tini_ms, over(tini_ms), tinis_ms, over(tinis_ms)))
print("   dumb-init %.2f ms (+%.2f)   catatonit %.2f ms (+%.2f)" % (dumb_ms, over(dumb_ms), cat_ms, over(cat_ms)))
ratio = over(ve_ms) / over(tini_ms) if over(tini_ms) > 0 else float("inf")
median = sorted(rounds)[len(rounds) // 2]
print("   overhead ratio vault-env / tini: %.2fx in the runs above; in %d rounds of `true`, tini and" % (ratio, len(rounds)))
print("   vault-env back to back: %s, median %.2fx                 target <= 1.2x: %s"
      % (" ".join("%.2fx" % r for r in rounds), median, ok(median <= 1.2)))
print("   (with VAULT_LOG_LEVEL=warn, i.e. without its three info lines: %.2f ms, %.2fx tini)" % (veq_ms, over(veq_ms) / over(tini_ms)))
rss_target = 2048 if static else 3584
print("3. RSS, daemon mode with %d live leases: vault-env %.2f MiB, bao agent exec mode %.2f MiB   target <= %.1f MiB: %s"
      % (leases, ve_rss / 1024, agent_rss / 1024, rss_target / 1024, ok(ve_rss <= rss_target)))
print("   (vault-env's own memory %.2f MiB; pages of its binary%s %.2f MiB)" % (anon_kib / 1024, "" if static else " and libraries", file_kib / 1024))
print("   over HTTPS (its TLS code runs too): vault-env %.2f MiB" % (ve_tls_rss / 1024))
print("4. stripped release binary: %d bytes (%.2f MB)                          target <= 3 MB: %s" % (size, size / 1e6, ok(size <= 3_000_000)))
PY
