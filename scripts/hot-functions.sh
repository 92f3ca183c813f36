#!/usr/bin/env bash
# Writes scripts/hot-functions.txt: the functions that vault-env executes in its usual runs, which
# scripts/link/rust-lld (the static builds) and scripts/link/cc (the glibc build) lay out together
# at the start of its code (scripts/link/hot-order says why).
# Run it again when that linker reports the list stale, or after large changes to the code paths
# below (bench.sh's RSS row shows the effect).
#
# The release builds for musl (as shipped) and glibc, with their symbols kept (in their own target
# directory), run under valgrind's callgrind against a real OpenBao (over HTTP and HTTPS) and
# MariaDB, each build:
#   1. exec mode, 10 KV secrets, over HTTP and over HTTPS (token login);
#   2. daemon mode over HTTPS: 10 database leases (5 s, at most 12 s: renewed, then fetched again
#      and the app restarted), a KV secret and an inline template, until SIGTERM; beside it, a
#      daemon with KV secrets only, idle for 190 s (the HTTP client checks its pool every 90 s and
#      closes the connections idle for 90 s: under valgrind, at the second check);
#   3. daemon mode over HTTP with an AppRole login (a renewable 6 s token) until the app exits 3.
# Every function that ran in any of them is listed once, demangled and without hashes.
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"
apt_install valgrind
H="$STATE/hot"; rm -rf "$H/runs"; mkdir -p "$H/runs"
IDLE_PIDS=()
trap 'stop_pid "${BAO_PID:-}"; stop_pid "${TLS_PID:-}"; stop_pid "${MARIADB_PID:-}"; stop_pid "${VE_PID:-}"; for p in "${IDLE_PIDS[@]}"; do stop_pid "$p"; done' EXIT

log "building vault-env (release profile for musl and for glibc, symbols kept, no layout: $H/target)"
cross_env
for target in x86_64-unknown-linux-musl x86_64-unknown-linux-gnu; do
  CARGO_PROFILE_RELEASE_STRIP=false HOT_FUNCTIONS='' \
    cargo build --release --locked -q -p vault-env --target "$target" --target-dir "$H/target" \
    --manifest-path "$ROOT/Cargo.toml"
done
declare -A BUILT=([musl]="$H/target/x86_64-unknown-linux-musl/release/vault-env" [glibc]="$H/target/x86_64-unknown-linux-gnu/release/vault-env")
# callgrind_for BUILD RUN : sets VE, BUILD's binary, and `callgrind`, the valgrind command line that
# writes RUN's profiles to $H/runs/BUILD-RUN.*; vault-env runs as `env VAR=VALUE... "${callgrind[@]}"
# "$VE" ...` (env execs valgrind, which runs vault-env in the same process: a signal sent to $!
# reaches it). --dump-before=execve: exec mode's profile is written before the app replaces vault-env.
callgrind_for() {
  VE=${BUILT[$1]}
  callgrind=(valgrind -q --tool=callgrind --demangle=no --dump-before=execve --callgrind-out-file="$H/runs/$1-$2.%p")
}

start_bao
export VAULT_ADDR VAULT_TOKEN=root
start_bao_tls "$H/tls"
start_mariadb

# setup : 10 KV secrets, the database engine with roles app0..app9, a policy and an AppRole role.
setup() {
  local i
  database_roles 5s 12s
  for i in $(seq 0 9); do
    bao_api POST "secret/data/hot/s$i" "{\"data\":{\"value\":\"secret-$i\"}}" >/dev/null
  done
  bao_api PUT sys/policies/acl/hot '{"policy":"path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"] }"}' >/dev/null
  bao_api POST sys/auth/approle '{"type":"approle"}' >/dev/null
  bao_api POST auth/approle/role/app '{"token_policies":["hot"],"token_ttl":"6s","token_max_ttl":"60s"}' >/dev/null
}
setup
in_tls setup

log "1. exec mode, 10 KV secrets, HTTP and HTTPS"
kv=(); for i in $(seq 0 9); do kv+=("SECRET_$i=vault:secret/data/hot/s$i#value"); done
for build in musl glibc; do
  callgrind_for $build exec-http
  env "${kv[@]}" "${callgrind[@]}" "$VE" true
  callgrind_for $build exec-https
  in_tls env "${kv[@]}" "${callgrind[@]}" "$VE" true
done

log "2. daemon mode over HTTPS: 10 database leases renewed, fetched again and the app restarted, then SIGTERM; beside them, an idle daemon of each build"
db=(); for i in $(seq 0 9); do db+=("DB_USER_$i=vault:database/creds/app$i#username"); done
IDLE_PIDS=() idle_since=$SECONDS
for build in musl glibc; do
  callgrind_for $build daemon-https
  env VAULT_ADDR="$TLS_ADDR" VAULT_CACERT="$TLS_CA" "${kv[@]}" VAULT_ENV_DAEMON=true "${callgrind[@]}" "$VE" sleep 600 \
    >"$H/$build-daemon-idle.log" 2>&1 &
  IDLE_PIDS+=($!)
done
for build in musl glibc; do
  callgrind_for $build daemon-https
  env VAULT_ADDR="$TLS_ADDR" VAULT_CACERT="$TLS_CA" "${db[@]}" VAULT_ENV_DAEMON=true \
    KV=vault:secret/data/hot/s0#value URL='mysql://${vault:database/creds/app0#username}:${vault:database/creds/app0#password}@db/app' \
    "${callgrind[@]}" "$VE" sleep 600 >"$H/$build-daemon-tls.log" 2>&1 &
  VE_PID=$!
  sleep 20
  kill -TERM "$VE_PID"; wait "$VE_PID" || true; VE_PID=
  [ "$(grep -c 'started the app' "$H/$build-daemon-tls.log")" -ge 2 ] || die "the app was not restarted (log: $H/$build-daemon-tls.log)"
done

log "3. daemon mode over HTTP, AppRole login (token renewed), the app exits 3"
role_id=$(bao_api GET auth/approle/role/app/role-id | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["role_id"])')
for build in musl glibc; do
  secret_id=$(bao_api POST auth/approle/role/app/secret-id '{}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["secret_id"])')
  status=0
  callgrind_for $build daemon-http
  env -u VAULT_TOKEN "${db[@]}" VAULT_ENV_DAEMON=true VAULT_AUTH_METHOD=approle VAULT_ROLE_ID="$role_id" \
    VAULT_SECRET_ID="$secret_id" "${callgrind[@]}" "$VE" sh -c 'sleep 8; exit 3' >"$H/$build-daemon-approle.log" 2>&1 || status=$?
  [ "$status" = 3 ] || die "the $build AppRole daemon run ended with $status, not 3 (log: $H/$build-daemon-approle.log)"
done

log "the idle daemons: 190 s in all (their idle connections closed), then SIGTERM"
sleep $((idle_since + 190 - SECONDS > 0 ? idle_since + 190 - SECONDS : 0))
for pid in "${IDLE_PIDS[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done; IDLE_PIDS=()

out="$ROOT/scripts/hot-functions.txt"
ring=$(ls "$H"/target/x86_64-unknown-linux-musl/release/deps/libring-*.rlib | head -1)
python3 - "$out" "$ROOT/scripts/link/names.sed" "${BUILT[musl]}" "${BUILT[glibc]}" "$ring" "$H"/runs/* <<'PY'
# Each function once, demangled, without crate disambiguators ([…]), legacy hashes (::h…) or ring's
# version (ring_core_0_17_14__…), in this order: those both daemon runs executed, then those only
# the HTTP one did, then those only the HTTPS one did (TLS), then the rest; so each daemon's code is
# one stretch. Within that, those more runs executed first, then by name. A run is both builds'
# (musl's and glibc's), and of what ran only the functions defined in vault-env's binary count (not
# glibc's, in libc.so, or valgrind's).
import collections, os, re, subprocess, sys
out, names_sed, ring, profiles = sys.argv[1], sys.argv[2], sys.argv[5], sys.argv[6:]
binaries = {"musl": sys.argv[3], "glibc": sys.argv[4]}
def normalized(mangled):
    """the list's names for these symbols: demangled, then scripts/link/names.sed, as the linker does"""
    demangled = subprocess.run(["c++filt"], input="\n".join(mangled) + "\n", capture_output=True, text=True, check=True).stdout
    names = subprocess.run(["sed", "-E", "-f", names_sed], input=demangled, capture_output=True, text=True, check=True).stdout
    return set(names.split("\n")[: len(mangled)])
def functions(path):
    """address -> names of the functions that nm finds in path"""
    found = collections.defaultdict(list)
    for line in subprocess.run(["nm", "--defined-only", path], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            found[int(parts[0], 16)].append(parts[2])
    return found
# Assembly functions without a symbol size (musl's memcpy, memset, __clone, …) show in callgrind by
# address only, and musl's start as "(below main)": both are named here from the binary's symbols.
by_address = {build: functions(path) for build, path in binaries.items()}
defined = {build: {n for names in found.values() for n in names} for build, found in by_address.items()}
runs = collections.defaultdict(set)  # run name -> the functions any of its profiles executed
for path in profiles:
    build, run = os.path.basename(path).split(".")[0].split("-", 1)
    mangled = set()
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
            if not m:
                continue
            name = m.group(1)
            if name == "(below main)":
                mangled.add("__libc_start_main")
            elif re.fullmatch(r"0x[0-9a-f]+", name):
                mangled.update(by_address[build].get(int(name, 16), []))
            else:
                mangled.add(name)
    mangled &= defined[build]
    if mangled:
        runs[run] |= normalized(sorted(mangled))
assert sorted(runs) == ["daemon-http", "daemon-https", "exec-http", "exec-https"], sorted(runs)
# Which of ring's C and assembly runs depends on the CPU's features, and valgrind's CPU has no ADX:
# where a function ran, its ADX variant goes with it (ring_core__x25519_ge_scalarmult_base_adx).
adx = {n for names in functions(ring).values() for n in normalized(names) if n.endswith("_adx")}
for run in runs.values():
    run |= {n for n in adx if n[: -len("_adx")] in run or n[: -len("_adx")] + "_nohw" in run}
http, https = runs["daemon-http"], runs["daemon-https"]
def place(name):
    stretch = 0 if name in http and name in https else 1 if name in http else 2 if name in https else 3
    return (stretch, -sum(name in run for run in runs.values()), name)
names = sorted(set().union(*runs.values()), key=place)
with open(out, "w") as f:
    f.write("# The functions vault-env executed in scripts/hot-functions.sh's runs (written by it: do not edit):\n")
    f.write("# both daemons' first, then the HTTP one's, the HTTPS one's, the rest. scripts/link/hot-order lays\n")
    f.write("# them out together in this order (the static builds and the glibc build).\n")
    f.writelines(name + "\n" for name in names)
print("wrote %s: %d functions" % (out, len(names)))
PY
